"""The catalogue's rule cases on the in-memory store (the same cases run on
Redis in tests/integration/test_catalogue_redis.py)."""

from __future__ import annotations

from tests.store_cases.catalogue import CatalogueCases


class TestCatalogue(CatalogueCases):
    pass
