"""Counter readings on the in-memory backend (the same cases run on Redis in
tests/integration/test_counters_redis.py)."""

from __future__ import annotations

from tests.store_cases.counters import CounterCases


class TestCounters(CounterCases):
    pass
