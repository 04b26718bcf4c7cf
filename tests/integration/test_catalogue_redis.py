"""The catalogue's rule cases on Redis (the same cases run on the in-memory
store in tests/unit/test_catalogue_memory.py)."""

from __future__ import annotations

from tests.store_cases.catalogue import CatalogueCases


class TestCatalogue(CatalogueCases):
    pass
