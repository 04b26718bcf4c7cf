"""Redelivery and duplicates on Redis (the cases shared with the in-memory
store, tests/store_cases/redelivery.py)."""

from __future__ import annotations

from tests.store_cases.redelivery import RedeliveryCases


class TestRedelivery(RedeliveryCases):
    pass
