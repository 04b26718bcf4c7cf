"""The Kafka broker restarted mid-stream: the worker reconnects and resumes;
nothing is lost and nothing is counted twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from devenv import services as devservices
from stream import kafka_io
from tests.integration.applied_events import applied
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port_pair,
    order_json,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)


async def test_broker_restart_mid_stream(services: Services, tmp_path: Path) -> None:
    layout = devservices.DevLayout(tmp_path / "kafka-home", devservices.JAR_CACHE)
    port = free_port_pair()
    await asyncio.to_thread(devservices.start_kafka, layout, port)
    try:
        settings = services.settings(
            rules_file=write_test_rules(tmp_path), kafka_bootstrap=f"127.0.0.1:{port}"
        )
        await create_topics(settings)
        events = [
            (f"k{i}", f"user-{i % 30}", f"2026-11-02T12:{(i // 30) % 60:02d}:{i % 60:02d}Z")
            for i in range(900)
        ]
        values = [
            (f"m{i % 13}".encode(), order_json(e, u, t)) for i, (e, u, t) in enumerate(events)
        ]
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        worker.start()
        try:
            wait_ready(worker)
            await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, values[:450])
            await wait_caught_up(worker, [settings.topics.orders])
            devservices.stop_pid(layout.kafka_dir / "kafka.pid", timeout_s=60)
            time.sleep(5)  # the worker is without a broker for a while
            assert worker.alive()
            await asyncio.to_thread(devservices.start_kafka, layout, port)
            await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, values[450:])
            await wait_caught_up(worker, [settings.topics.orders], timeout_s=180)
        finally:
            worker.stop()
        client = aioredis.Redis.from_url(settings.redis_url)
        try:
            ids = {e for e, _, _ in events}
            done = await applied(client, settings.redis_namespace, ids)
        finally:
            await client.aclose()
        assert done == ids
        alerts = [
            orjson.loads(r.value)
            for r in await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.alerts)
        ]
        print(
            f"\n{len(events)} events across a broker restart: {len(done)} applied once, "
            f"{len(alerts)} alerts published ({len({a['alert_id'] for a in alerts})} distinct)"
        )
        assert {a["entity_id"] for a in alerts} == {u for _, u, _ in events}
        assert len({a["alert_id"] for a in alerts}) == 30
    finally:
        devservices.stop_pid(layout.kafka_dir / "kafka.pid", timeout_s=60)
