"""The guardrails' shared counts on Redis, standalone and Cluster: the Lua
scripts (the same cases run on the in-memory store in
tests/unit/test_guard_counters_memory.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stream.store.guard_counters import GuardCounters
from tests.integration.services import LocalCluster
from tests.integration.test_redis_cluster import new_cluster_store
from tests.store_cases.guard_counters import GuardCounterCases

pytestmark = pytest.mark.integration


class TestGuardCounters(GuardCounterCases):
    pass


class TestGuardCountersOnACluster(GuardCounterCases):
    """Every key of a rule's budget shares one hash tag, and so do the
    breaker's: each script runs on one node."""

    @pytest.fixture
    async def counters(self, redis_cluster: LocalCluster) -> AsyncIterator[GuardCounters]:
        store = new_cluster_store(redis_cluster)
        await store.start()
        try:
            yield store.guard_counters()
        finally:
            await store.drop_namespace()
            await store.close()
