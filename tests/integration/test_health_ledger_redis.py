"""The merchant-health ledger on a real redis-server (the cases shared with
the in-memory twin, tests/unit/test_health_ledger_memory.py)."""

from __future__ import annotations

import pytest

from tests.store_cases.health import HealthLedgerCases

pytestmark = pytest.mark.integration


class TestHealthLedger(HealthLedgerCases):
    pass
