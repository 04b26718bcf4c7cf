"""The same store and pipeline on a local 3-master Redis Cluster: every
aggregate kind, idempotency and incidents, with keys spread over all nodes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster

from detectors.events import Topic
from stream.codec import SourceRecord
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.store.base import EventStatus, IncidentStatus
from stream.store.redis_store import RedisStore
from tests.integration import test_redis_store as single
from tests.integration.services import LocalCluster, Services, order_json, write_test_rules
from tests.store_cases import store as cases
from tests.store_cases.requests import process


def new_cluster_store(redis_cluster: LocalCluster) -> RedisStore:
    return RedisStore.from_url(
        redis_cluster.url,
        f"c{uuid.uuid4().hex[:8]}",
        2.0,
        cases.CONFIG,
        cluster=True,
        hasher=single.HASHER,
    )


@pytest.fixture
async def cluster_store(redis_cluster: LocalCluster) -> AsyncIterator[RedisStore]:
    store = new_cluster_store(redis_cluster)
    await store.start()
    yield store
    await store.drop_namespace()
    await store.close()


async def test_every_aggregate_kind_matches_the_reference_on_a_cluster(
    redis_cluster: LocalCluster,
) -> None:
    arrivals = [
        (f"e{i}", cases.T0 + (i * 7919) % 30_000, 1 + i % 5, "abc"[i % 3]) for i in range(40)
    ]
    arrivals += arrivals[:10]  # duplicates
    store = new_cluster_store(redis_cluster)
    await store.start()
    try:
        await cases.check_against_reference(store, arrivals)
    finally:
        await store.drop_namespace()
        await store.close()


async def test_a_batch_spanning_all_nodes_is_one_call_per_slot(cluster_store: RedisStore) -> None:
    batch = [cases.ev(f"b{i}", cases.T0 + i, user=f"user-{i}") for i in range(60)]
    first = await cluster_store.apply(batch)
    assert all(o.status is EventStatus.NEW for o in first)
    again = await cluster_store.apply(batch)
    assert all(o.status is EventStatus.DUPLICATE for o in again)
    client: RedisCluster = cluster_store.client
    nodes_with_keys = 0
    for node in client.get_primaries():
        keys = await client.execute_command("DBSIZE", target_nodes=node)
        nodes_with_keys += int(keys) > 0
    assert nodes_with_keys == 3


async def test_a_batch_touching_more_slots_than_connections_per_node(
    cluster_store: RedisStore,
) -> None:
    """One call per slot, and redis-py's cluster client refuses a call past 100
    connections to a node: a worker's batch of 200 events touches hundreds."""
    batch = [cases.ev(f"w{i}", cases.T0 + i, user=f"user-{i}") for i in range(600)]
    assert len({o.status for o in await cluster_store.apply(batch)}) == 1
    again = await cluster_store.apply(batch)
    assert all(o.status is EventStatus.DUPLICATE for o in again)
    assert await cluster_store.drop_namespace() >= 600


async def test_incident_claims_on_a_cluster(cluster_store: RedisStore) -> None:
    (first,) = await cluster_store.claim_incidents([cases.claim(cases.T0, cases.T0 + 600_000)])
    (redo,) = await cluster_store.claim_incidents([cases.claim(cases.T0, cases.T0 + 600_000)])
    assert (first.status, redo.status) == (IncidentStatus.NEW, IncidentStatus.REEMIT)


async def test_pipeline_end_to_end_on_a_cluster(
    redis_cluster: LocalCluster, services: Services, tmp_path: Path
) -> None:
    settings = services.settings(
        rules_file=write_test_rules(tmp_path), redis_cluster=True, redis_url=redis_cluster.url
    )
    store = RedisStore.from_url(
        settings.redis_url, settings.redis_namespace, 2.0, cluster=True, hasher=single.HASHER
    )
    await store.start()
    try:
        pipeline = Pipeline(settings, store, load_rulebook(settings))
        values = [
            order_json(f"o{i}", f"user-{i % 3}", f"2026-11-02T12:0{i // 3}:00Z") for i in range(18)
        ]
        records = [SourceRecord("orders", 0, i, b"m", v, 0) for i, v in enumerate(values)]
        now = 1_900_000_000_000
        result = await process(pipeline, Topic.ORDERS, records, now)
        alerts = [
            orjson.loads(o.value) for o in result.outputs if o.topic == settings.topics.alerts
        ]
        assert sorted(a["entity_id"] for a in alerts) == ["user-0", "user-1", "user-2"]
        replay = await process(pipeline, Topic.ORDERS, records, now)
        assert [o.value for o in replay.outputs] == [o.value for o in result.outputs]
    finally:
        await store.drop_namespace()
        await store.close()


async def test_delivered_watermarks_on_a_cluster(cluster_store: RedisStore) -> None:
    await cases.check_delivered_watermarks(cluster_store)
