"""kill -9 of the worker mid-stream, three times, restarting it each time:
no event is lost, none counted twice, and every expected alert is published
with its deterministic id."""

from __future__ import annotations

import asyncio
import random
import re
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis

from detectors.engine import AggregateRequest
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms
from stream import kafka_io
from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from stream.store_wiring import open_store
from tests.integration.applied_events import applied
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    order_json,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)
from tests.store_cases.requests import event_requests

pytestmark = pytest.mark.integration

T0 = parse_rfc3339_ms("2026-11-02T08:00:00Z")
MIN = 60_000


def make_stream(rng: random.Random) -> tuple[list[tuple[str, str, int]], dict[str, int]]:
    """(event_id, user, event_ms) for 240 calm users and 30 bursty ones.
    Returns the events and, per bursty user, the start of its burst."""
    events: list[tuple[str, str, int]] = []
    for u in range(240):  # calm: 6 orders spread over six hours
        for i in range(6):
            events.append((f"c{u}-{i}", f"calm-{u}", T0 + i * 60 * MIN + rng.randrange(MIN)))
    bursts: dict[str, int] = {}
    for u in range(30):  # bursty: 7 orders within 7 minutes
        start = T0 + rng.randrange(0, 300) * MIN
        bursts[f"bursty-{u}"] = start
        for i in range(7):
            events.append((f"b{u}-{i}", f"bursty-{u}", start + i * MIN))
    rng.shuffle(events)
    return events, bursts


def consumed(worker: WorkerProcess) -> float:
    url = f"http://127.0.0.1:{worker.settings.web_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(v) for v in re.findall(r"^fraud_events_consumed_total\{.*\} (\S+)$", text, re.M)
    )


# A soak variant: the default suite kills workers at three random points in
# test_arrival_order (decisions equal to the backtest) and while records are
# held in test_simulated_live.
@pytest.mark.soak
async def test_kill_minus_nine_three_times_loses_nothing(
    services: Services, tmp_path: Path
) -> None:
    rng = random.Random(2026)
    settings = services.settings(rules_file=write_test_rules(tmp_path), batch_max=100)
    await create_topics(settings)
    events, bursts = make_stream(rng)
    values = [
        (f"m-{rng.randrange(40)}".encode(), order_json(e, u, format_rfc3339_ms(t)))
        for e, u, t in events
    ]
    chunks = [values[i::4] for i in range(4)]
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    kills = 0
    try:
        worker.start()
        wait_ready(worker)
        for chunk in chunks[:3]:
            await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, chunk)
            before = consumed(worker)
            deadline = time.monotonic() + 60
            while (
                consumed(worker) < before + rng.randrange(50, 300) and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.01)
            worker.kill()
            kills += 1
            worker.start()
            wait_ready(worker)
        await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, chunks[3])
        await wait_caught_up(worker, [settings.topics.orders], timeout_s=180)
    finally:
        worker.stop()
    print(f"\nkilled {kills} times; {len(values)} events; worker started {worker.starts} times")

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        ids = {e for e, _, _ in events}
        assert await applied(client, settings.redis_namespace, ids) == ids
    finally:
        await client.aclose()
    # The counters themselves: each user's 10-minute order count at its last
    # order equals a recomputation from the event list (30 s buckets).
    rule = load_rulebook(settings).rules[0]
    store = open_store(settings)
    await store.start()
    try:
        last = {u: max(t for _, uu, t in events if uu == u) for _, u, _ in events}
        reads = [
            event_requests(f"probe-{u}", t, [AggregateRequest(rule.metric.aggregate, (u,), None)])
            for u, t in last.items()
        ]
        observed = await store.apply(reads)
        for (user, t), obs in zip(last.items(), observed, strict=True):
            b = t // 30_000
            expected_count = sum(
                1 for _, u, tt in events if u == user and b - 20 < tt // 30_000 <= b
            )
            assert obs.values[rule.metric.aggregate.agg_id].value == expected_count, user
    finally:
        await store.close()

    published = [
        orjson.loads(r.value)
        for r in await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.alerts)
    ]
    ids_by_user: dict[str, set[str]] = {}
    for a in published:
        ids_by_user.setdefault(a["entity_id"], set()).add(a["alert_id"])
    print(
        f"alerts: {len(published)} published, {len(ids_by_user)} users, "
        f"{len(bursts)} bursty users expected"
    )
    # Every bursty user alerted, no calm user; one incident → one id, even when
    # a crash made the worker republish it.
    assert set(ids_by_user) == set(bursts)
    assert all(len(ids) == 1 for ids in ids_by_user.values()), ids_by_user
    for a in published:
        start = parse_rfc3339_ms(a["window"]["start"])
        # a bucket-aligned 10-minute window around the 7-minute burst
        assert bursts[a["entity_id"]] - 10 * MIN < start <= bursts[a["entity_id"]] + 2 * MIN
        assert a["observed"] >= 5
    # Every alert of a clean run (the backtest of the same events) is published.
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(
        b"".join(
            orjson.dumps({"topic": "orders", "value": orjson.loads(v)}) + b"\n" for _, v in values
        )
    )
    await run_backtest(settings, load_rulebook(settings), events_file, tmp_path / "bt.jsonl", None)
    clean = {
        orjson.loads(line)["value"]["alert_id"]
        for line in (tmp_path / "bt.jsonl").read_bytes().splitlines()
        if orjson.loads(line)["topic"] == settings.topics.alerts
    }
    assert {a["alert_id"] for a in published} == clean
    for alert_id in {a["alert_id"] for a in published}:
        copies = {orjson.dumps(a) for a in published if a["alert_id"] == alert_id}
        assert len(copies) == 1
