"""The merchant-health ledger on the in-memory backend (the same cases run on
Redis in tests/integration/test_health_ledger_redis.py)."""

from __future__ import annotations

from tests.store_cases.health import HealthLedgerCases


class TestHealthLedger(HealthLedgerCases):
    pass
