"""The worker process end to end on real Kafka and Redis: alerts with evidence,
dead letters with reasons, idempotency under re-publication, event time."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from detectors.rules_entities import EntityType
from stream import kafka_io
from stream.store_wiring import key_hasher
from tests.integration.applied_events import applied
from tests.integration.services import (
    REPO,
    Services,
    WorkerProcess,
    create_topics,
    order_json,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def worker(
    request: pytest.FixtureRequest, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    """The whole end-to-end suite runs twice: on a standalone Redis and on a
    local 3-master Redis Cluster."""
    import asyncio

    rules = write_test_rules(Path(tmp_path_factory.mktemp("rules")))
    settings = services.settings(rules_file=rules)
    if request.param == "redis-cluster":
        cluster = request.getfixturevalue("redis_cluster")
        settings = settings.replace(redis_url=cluster.url, redis_cluster=True)
    asyncio.run(create_topics(settings))
    proc = WorkerProcess(settings, Path(tmp_path_factory.mktemp("worker")) / "worker.log")
    proc.start()
    try:
        wait_ready(proc)
        yield proc
    finally:
        proc.stop()


@pytest.fixture
async def redis(worker: WorkerProcess) -> AsyncIterator[Any]:
    s = worker.settings
    client: Any = (
        RedisCluster.from_url(s.redis_url)
        if s.redis_cluster
        else aioredis.Redis.from_url(s.redis_url)
    )
    yield client
    await client.aclose()


async def send_orders(worker: WorkerProcess, values: list[bytes], key: bytes = b"m-1") -> None:
    s = worker.settings
    await kafka_io.produce(s.kafka_bootstrap, s.topics.orders, [(key, v) for v in values])
    await wait_caught_up(worker, [s.topics.orders])


async def outputs(worker: WorkerProcess, topic: str) -> list[dict[str, Any]]:
    recs = await kafka_io.read_from(worker.settings.kafka_bootstrap, topic)
    return [orjson.loads(r.value) for r in recs]


async def alerts_for(worker: WorkerProcess, user: str) -> list[dict[str, Any]]:
    return [
        a for a in await outputs(worker, worker.settings.topics.alerts) if a["entity_id"] == user
    ]


async def applied_for(
    redis: Any, worker: WorkerProcess, user: str, event_ids: list[str]
) -> set[str]:
    """The ids among `event_ids` applied to `user`'s slot (its duplicate guard)."""
    tag = key_hasher(worker.settings).tag((EntityType.USER,), (user,))
    on = tag if worker.settings.redis_cluster else None
    return await applied(redis, worker.settings.redis_namespace, event_ids, on)


def schema_validator(name: str) -> jsonschema.Draft202012Validator:
    path = REPO / "contract" / "schemas" / f"{name}.schema.json"
    return jsonschema.Draft202012Validator(orjson.loads(path.read_bytes()))


def at(minute: int) -> str:
    return f"2026-11-02T12:{minute:02d}:00Z"


async def test_burst_gives_exactly_one_alert_with_evidence(worker: WorkerProcess) -> None:
    burst = [order_json(f"burst-{i}", "bursty", at(i)) for i in range(9)]
    normal = [order_json(f"norm-{i}", "normal", at(i * 15)) for i in range(4)]
    await send_orders(
        worker, [v for pair in zip(burst, normal * 3, strict=False) for v in pair] + burst[4:]
    )
    alerts = await alerts_for(worker, "bursty")
    assert len(alerts) == 1, alerts
    (alert,) = alerts
    assert alert["rule_id"] == "user_order_velocity" and alert["entity_type"] == "user"
    assert alert["observed"] >= 5 and alert["threshold"] == 5
    assert alert["window"]["length_ms"] == 600_000
    assert alert["trigger_event_id"] in {f"burst-{i}" for i in range(9)}
    assert alert["trigger_topic"] == worker.settings.topics.orders
    assert alert["evidence"]["value"] == alert["observed"]
    assert alert["occurred_at"].endswith("Z") and alert["detected_at"].endswith("Z")
    assert alert["mode"] == "enforce"
    schema_validator("risk-alerts").validate(alert)
    assert await alerts_for(worker, "normal") == []


async def test_bad_inputs_are_dead_lettered_and_neighbours_processed(
    worker: WorkerProcess, redis: Any
) -> None:
    good = order_json("dlq-ok-0", "dlq-user", at(0))
    base = orjson.loads(good)
    bad: dict[str, bytes] = {
        "invalid_json": b'{"event_id": "x", ',
        "invalid_utf8": b'{"event_id": "\xc3\x28"}',
        "missing_field": orjson.dumps({k: v for k, v in base.items() if k != "user_id"}),
        "wrong_type": orjson.dumps({**base, "amount_minor": "15.00"}),
        "out_of_range": orjson.dumps({**base, "amount_minor": -100}),
        "bad_time": orjson.dumps({**base, "occurred_at": "2026-11-02T12:00:00"}),
        "oversize": b'{"pad": "' + b"x" * 2_000_000 + b'"}',
    }
    values = [good]
    for i, payload in enumerate(bad.values(), start=1):
        values += [payload, order_json(f"dlq-ok-{i}", "dlq-user", at(i * 20 % 60))]
    await send_orders(worker, values, key=b"dlq-merchant")
    dead = [
        d
        for d in await outputs(worker, worker.settings.topics.dlq)
        if d["key_b64"] == base64.b64encode(b"dlq-merchant").decode()
    ]
    assert sorted(d["error"]["kind"] for d in dead) == sorted(bad)
    for d in dead:
        schema_validator("fraud-dlq").validate(d)
        assert d["error"]["message"] and d["source_topic"] == worker.settings.topics.orders
        assert d["received_at"].endswith("Z")
    oversize = next(d for d in dead if d["error"]["kind"] == "oversize")
    assert oversize["value_size"] > 2_000_000 and oversize["value_truncated"] is True
    expected = [f"dlq-ok-{i}" for i in range(len(bad) + 1)]
    assert await applied_for(redis, worker, "dlq-user", [*expected, "x"]) == set(expected)


async def test_republished_events_change_nothing(worker: WorkerProcess, redis: Any) -> None:
    values = [order_json(f"rep-{i}", "repeat-user", at(i)) for i in range(7)]
    await send_orders(worker, values)
    ids = [f"rep-{i}" for i in range(7)]
    first = {a["alert_id"] for a in await alerts_for(worker, "repeat-user")}
    assert len(first) == 1 and await applied_for(redis, worker, "repeat-user", ids) == set(ids)
    # Upstream re-publishes the same events (new offsets, other partitions too).
    await send_orders(worker, values, key=b"m-2")
    await send_orders(worker, values[::-1], key=b"m-3")
    again = await alerts_for(worker, "repeat-user")
    assert {a["alert_id"] for a in again} == first
    assert len(again) == 1  # nothing re-published for upstream duplicates


async def test_out_of_order_across_partitions_counts_event_time(worker: WorkerProcess) -> None:
    """Same user, orders at several merchants (several partitions), sent
    newest first; two orders from the next hour must not join the window."""
    inside = [(f"ooo-{i}", at(40 + 2 * i)) for i in range(5)]
    values = [
        order_json("ooo-next-a", "ooo-user", "2026-11-02T13:30:00Z"),
        order_json("ooo-next-b", "ooo-user", "2026-11-02T13:31:00Z"),
    ]
    values += [order_json(eid, "ooo-user", t, merchant=f"m-{eid}") for eid, t in reversed(inside)]
    s = worker.settings
    await kafka_io.produce(
        s.kafka_bootstrap, s.topics.orders, [(f"k{i}".encode(), v) for i, v in enumerate(values)]
    )
    await wait_caught_up(worker, [s.topics.orders])
    (alert,) = await alerts_for(worker, "ooo-user")
    assert alert["observed"] == 5
    assert alert["trigger_event_id"] in {eid for eid, _ in inside}
    # bucket-aligned (30 s) window holding 12:40 .. 12:48
    assert alert["window"]["start"] == "2026-11-02T12:38:30.000Z"


async def test_health_and_metrics_endpoints(worker: WorkerProcess) -> None:
    import urllib.request

    base = f"http://127.0.0.1:{worker.settings.web_port}"
    with urllib.request.urlopen(base + "/livez", timeout=2) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(base + "/metrics", timeout=2) as resp:
        text = resp.read().decode()
    assert "fraud_events_consumed_total" in text and "fraud_dead_letters_total" in text
