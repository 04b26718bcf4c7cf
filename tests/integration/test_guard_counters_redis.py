"""The guardrails' shared counts on Redis: the Lua scripts (the same cases
run on the in-memory store in tests/unit/test_guard_counters_memory.py)."""

from __future__ import annotations

import pytest

from tests.store_cases.guard_counters import GuardCounterCases

pytestmark = pytest.mark.integration


class TestGuardCounters(GuardCounterCases):
    pass
