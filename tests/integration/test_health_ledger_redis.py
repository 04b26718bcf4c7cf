"""The merchant-health ledger on a real redis-server, standalone and Cluster
(the cases shared with the in-memory twin, tests/unit/test_health_ledger_memory.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stream.store.health_ledger import HealthLedger
from tests.integration.services import LocalCluster
from tests.integration.test_redis_cluster import new_cluster_store
from tests.store_cases.health import HealthLedgerCases

pytestmark = pytest.mark.integration


class TestHealthLedger(HealthLedgerCases):
    pass


class TestHealthLedgerOnACluster(HealthLedgerCases):
    """A merchant's ledger is under its own tag and the owners under
    `{health}`: each pipeline spans slots, which the cluster client splits."""

    @pytest.fixture
    async def ledger(self, redis_cluster: LocalCluster) -> AsyncIterator[HealthLedger]:
        store = new_cluster_store(redis_cluster)
        await store.start()
        try:
            yield store.health_ledger()
        finally:
            await store.drop_namespace()
            await store.close()
