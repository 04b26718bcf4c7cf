"""Redelivery and duplicates on the in-memory store (the same cases run on
Redis in tests/integration/test_redelivery_redis.py)."""

from __future__ import annotations

from tests.store_cases.redelivery import RedeliveryCases


class TestRedelivery(RedeliveryCases):
    pass
