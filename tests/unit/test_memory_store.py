"""The store's semantics on the in-memory backend (the same cases run on
Redis in tests/integration/test_redis_store.py)."""

from __future__ import annotations

from tests.store_cases.store import StoreCases


class TestStore(StoreCases):
    pass
