"""Counter readings on Redis, standalone and Cluster (the same cases run on
the in-memory store in tests/unit/test_counters_memory.py)."""

from __future__ import annotations

import pytest

from stream.store.redis_store import RedisStore
from tests.integration.test_redis_cluster import cluster_store  # noqa: F401 (a fixture)
from tests.store_cases.counters import CounterCases

pytestmark = pytest.mark.integration


class TestCounters(CounterCases):
    pass


class TestCountersOnACluster(CounterCases):
    """An entity's keys share its hash tag: each pipeline goes to one node."""

    @pytest.fixture
    def store(self, cluster_store: RedisStore) -> RedisStore:  # noqa: F811 (the fixture's name)
        return cluster_store
