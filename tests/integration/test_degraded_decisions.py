"""Degraded decisions on Redis (the same cases run on the in-memory store in
tests/unit/test_degraded_memory.py)."""

from __future__ import annotations

from tests.store_cases.degraded import DegradedCases


class TestDegraded(DegradedCases):
    pass
