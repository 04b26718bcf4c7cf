"""Input written by a transactional producer (Kafka Streams, Flink and other
exactly-once producers): each partition ends with a commit marker that is
never delivered, so its high watermark stays one past the last record. The
event-time merge must see such a partition as caught up, not as a stalled
one that degrades every decision reading it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream import kafka_io
from tests.integration.services import Services, WorkerProcess, create_topics, wait_ready
from tests.integration.test_arrival_order import metric
from tests.integration.test_degraded_decisions import RULES, payout

pytestmark = pytest.mark.integration


def order(event_id: str, amount: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": "2026-11-01T20:00:00Z",
            "order_id": f"o-{event_id}",
            "user_id": f"u-{event_id}",
            "merchant_id": "m-1",
            "amount_minor": amount,
            "currency": "EUR",
        }
    )


async def test_a_partition_ending_in_a_commit_marker_is_caught_up(
    services: Services, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = services.settings(rules_file=rules, align_stall_s=4.0)
    await create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, transactional_id=f"tx-{settings.app_id}"
    )
    await producer.start()
    try:
        worker.start()
        wait_ready(worker)
        async with producer.transaction():
            for i, amount in enumerate((6000, 4000)):
                await producer.send(settings.topics.orders, order(f"o{i}", amount), key=b"m-1")
        deadline = time.monotonic() + 60
        while metric(worker, "fraud_events_consumed_total") < 2:
            assert time.monotonic() < deadline, worker.log_tail()
            await asyncio.sleep(0.2)
        await asyncio.sleep(12)  # beyond the stall time and two lag-timer rounds
        # Earned 100.00, paid 150.00: a complete decision freezes the payout.
        await kafka_io.produce(
            settings.kafka_bootstrap,
            settings.topics.payouts,
            [(b"m-1", payout("p1", "m-1", 15000))],
        )
        freezes: list[dict[str, object]] = []
        while not freezes and time.monotonic() < deadline + 60:
            await asyncio.sleep(0.5)
            records = await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.alerts)
            alerts = [orjson.loads(r.value) for r in records]
            freezes = [
                orjson.loads(r.value)
                for r in await kafka_io.read_from(
                    settings.kafka_bootstrap, settings.topics.fund_freezes
                )
            ]
        stalled = metric(worker, "fraud_alignment_stalled_partitions")
        degraded = metric(worker, "fraud_decisions_degraded_total")
    finally:
        await producer.stop()
        worker.stop()
    print(f"\nalerts {len(alerts)}, fund freezes {len(freezes)}, stalled {stalled}")
    (alert,) = alerts
    assert "degraded" not in alert["evidence"], alert
    assert len(freezes) == 1 and stalled == 0 and degraded == 0
