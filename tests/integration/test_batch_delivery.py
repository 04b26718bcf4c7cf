"""Batch delivery (stream.batch_delivery) across a consumer group that
changes under load: a second worker joins mid-stream, the first leaves
(SIGTERM), a third joins and the second is killed (kill -9), with the
agents applying records through the event-time merge and directly.

Every user places exactly five orders and the test rule alerts on a user's
fifth order in ten minutes, so a user without an alert lost an order. While
the group works, its committed offsets are sampled: whenever a partition's
committed offset had passed a fifth order, that order's alert must already
be in Kafka (sent before the sample), or the commit passed a record that was
not applied yet."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stream import kafka_io
from stream.settings import Settings
from tests.integration import services as it
from tests.integration.services import Services, WorkerProcess

USERS = 4_000
ORDERS_EACH = 5  # the test rule's threshold
CHUNKS = 50
CHUNK_PAUSE_S = 0.2

Samples = list[tuple[float, dict[tuple[str, int], int]]]


def orders(now_ms: int) -> list[tuple[bytes, bytes]]:
    """Five orders per user within two minutes; a user's orders are interleaved
    with everyone else's, as traffic is."""
    out = []
    for k in range(ORDERS_EACH):
        for u in range(USERS):
            at = datetime.fromtimestamp((now_ms - 120_000 + k * 20_000 + u) / 1000, UTC)
            stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            event = it.order_json(f"e-{u}-{k}", f"u-{u}", stamp, merchant=f"m-{u % 97}")
            out.append((f"u-{u}".encode(), event))
    return out


async def produce_slowly(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    size = len(records) // CHUNKS
    for start in range(0, len(records), size):
        chunk = records[start : start + size]
        await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, chunk)
        await asyncio.sleep(CHUNK_PAUSE_S)


async def sample_commits(
    settings: Settings, samples: Samples, errors: list[str], stop: asyncio.Event
) -> None:
    """The group's committed offsets, each stamped with a time after it was read."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        while not stop.is_set():
            try:
                offsets = await admin.list_consumer_group_offsets(settings.app_id)
            except KafkaError as exc:  # the group's coordinator moving: ask again
                errors.append(repr(exc))
            else:
                seen = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
                samples.append((time.time(), seen))
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def committed_ahead(
    topic: str, samples: Samples, fifth: dict[tuple[int, int], str], alerted: dict[str, int]
) -> list[tuple[int, int, float]]:
    """(partition, committed offset, sample time) of every sample whose
    committed offset had passed a fifth order whose alert came later."""
    latest: dict[int, tuple[list[int], list[int]]] = {}  # offsets, latest alert up to each
    for (partition, offset), event_id in sorted(fifth.items()):
        offsets, alert_ms = latest.setdefault(partition, ([], []))
        offsets.append(offset)
        alert_ms.append(max(alert_ms[-1] if alert_ms else 0, alerted[event_id]))
    ahead = []
    for at, committed in samples:
        for (name, partition), offset in committed.items():
            offsets, alert_ms = latest.get(partition, ([], []))
            passed = bisect.bisect_left(offsets, offset)
            if name == topic and passed and alert_ms[passed - 1] > at * 1000 + 1:
                ahead.append((partition, offset, at))
    return ahead


async def in_thread(action: Callable[[], object]) -> None:
    await asyncio.to_thread(action)


@pytest.mark.parametrize(
    ("batch", "merged"),
    [
        pytest.param(True, True, id="merged"),
        pytest.param(True, False, id="direct"),
        # The take_events fallback (FRAUD_BATCH_DELIVERY=false), not the default.
        pytest.param(False, True, id="take-events-merged", marks=pytest.mark.soak),
    ],
)
async def test_join_leave_and_kill_lose_nothing_and_never_commit_ahead(
    services: Services, tmp_path: Path, batch: bool, merged: bool
) -> None:
    """Both agent paths: through the event-time merge, and applied directly;
    and faust's per-record path (the fallback) through the merge."""
    rules = it.write_test_rules(tmp_path)
    settings = services.settings(rules_file=rules, batch_delivery=batch, align_enabled=merged)
    await it.create_topics(settings)

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(settings.replace(web_port=it.free_port()), tmp_path / name)

    a, b, c = worker("a.log"), worker("b.log"), worker("c.log")
    samples: Samples = []
    stop = asyncio.Event()
    errors: list[str] = []
    sampler = asyncio.ensure_future(sample_commits(settings, samples, errors, stop))
    try:
        a.start()
        await in_thread(lambda: it.wait_ready(a))
        producing = asyncio.ensure_future(produce_slowly(settings, orders(int(time.time() * 1000))))
        await asyncio.sleep(3)
        b.start()  # joins mid-stream: a rebalance under load
        await in_thread(lambda: it.wait_ready(b))
        await asyncio.sleep(2)
        await in_thread(a.stop)  # leaves: SIGTERM
        c.start()
        await in_thread(lambda: it.wait_ready(c))
        await asyncio.sleep(1)
        b.kill()  # kill -9: whatever it had not committed is c's again
        await producing
        await it.wait_caught_up(c, [settings.topics.orders], timeout_s=120)
    finally:
        stop.set()
        for w in (a, b, c):
            w.stop()
        await sampler

    written = await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.orders)
    assert len(written) == USERS * ORDERS_EACH
    alerts = await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.alerts)
    first_alert: dict[str, int] = {}
    for r in alerts:
        value = orjson.loads(r.value)
        if value.get("rule_id") == "user_order_velocity":
            trigger = value["trigger_event_id"]
            first_alert[trigger] = min(first_alert.get(trigger, r.timestamp), r.timestamp)
    fifth = {
        (r.partition, r.offset): orjson.loads(r.value)["event_id"]
        for r in written
        if orjson.loads(r.value)["event_id"].endswith(f"-{ORDERS_EACH - 1}")
    }
    missing = set(fifth.values()) - set(first_alert)
    assert not missing, f"{len(missing)} users lost an order, e.g. {sorted(missing)[:5]}"

    ahead = committed_ahead(settings.topics.orders, samples, fifth, first_alert)
    assert len(samples) > 20, errors[:3]
    assert not ahead, f"committed before applied: {ahead[:5]}"
    print(f"\n{len(written)} orders, {len(first_alert)} alerts, {len(samples)} commit samples")
