"""The guardrails' shared counts on the in-memory backend (the same cases
run on Redis in tests/integration/test_guard_counters_redis.py)."""

from __future__ import annotations

from tests.store_cases.guard_counters import GuardCounterCases


class TestGuardCounters(GuardCounterCases):
    pass
