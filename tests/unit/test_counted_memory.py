"""Counted-event rings on the in-memory backend (the same cases run on Redis
in tests/integration/test_counted_redis.py)."""

from __future__ import annotations

from tests.store_cases.counted import CountedCases


class TestCounted(CountedCases):
    pass
