"""Degraded decisions on the in-memory store (the same cases run on Redis in
tests/integration/test_degraded_decisions.py)."""

from __future__ import annotations

from tests.store_cases.degraded import DegradedCases


class TestDegraded(DegradedCases):
    pass
