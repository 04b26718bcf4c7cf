"""Input written by a transactional producer (Kafka Streams, Flink and other
exactly-once producers): each partition ends with a commit marker that is
never delivered, so its high watermark stays one past the last record. The
event-time merge must see such a partition as caught up, not as a stalled
one that degrades every decision reading it, while running and after a
restart (when nothing has been delivered from it yet)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream import kafka_io
from stream.lag import LAG_INTERVAL_S
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    decisions_only,
    wait_ready,
)
from tests.integration.test_arrival_order import metric
from tests.store_cases.degraded import RULES, payout

pytestmark = pytest.mark.integration


def order(event_id: str, merchant: str, amount: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": "2026-11-01T20:00:00Z",
            "order_id": f"o-{event_id}",
            "user_id": f"u-{event_id}",
            "merchant_id": merchant,
            "amount_minor": amount,
            "currency": "EUR",
        }
    )


async def wait_for(what: str, check: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"no {what} within {timeout_s}s"
        await asyncio.sleep(0.3)


async def decisions(settings: Settings, topic: str) -> list[dict[str, Any]]:
    return decisions_only(
        [orjson.loads(r.value) for r in await kafka_io.read_from(settings.kafka_bootstrap, topic)]
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

    async def orders_caught_up() -> bool:
        # Called once two lag-timer rounds (which recognise markers) and the
        # stall time have passed: an orders partition ending in a marker is
        # then caught up, or it would stay stalled.
        return metric(worker, "fraud_alignment_stalled_partitions") == 0

    await producer.start()
    try:
        worker.start()
        wait_ready(worker)
        async with producer.transaction():
            for i, (merchant, amount) in enumerate([("m-1", 6000), ("m-1", 4000), ("m-3", 10000)]):
                await producer.send(
                    settings.topics.orders, order(f"o{i}", merchant, amount), key=merchant.encode()
                )

        async def consumed() -> bool:
            return metric(worker, "fraud_events_consumed_total") >= 3

        await wait_for("orders consumed", consumed)
        await asyncio.sleep(2 * LAG_INTERVAL_S + 1)
        await wait_for("marker recognised", orders_caught_up, timeout_s=20)
        # Earned 100.00, paid 150.00: a complete decision freezes the payout.
        paid = [(b"m-1", payout("p1", "m-1", 15000))]
        await kafka_io.produce(settings.kafka_bootstrap, settings.topics.payouts, paid)

        async def frozen(n: int) -> bool:
            return len(await decisions(settings, settings.topics.fund_freezes)) >= n

        await wait_for("first freeze", lambda: frozen(1))
        worker.stop()  # after a restart nothing is delivered from the orders partitions
        worker.start()
        wait_ready(worker)
        await asyncio.sleep(2 * LAG_INTERVAL_S + 1)
        await wait_for("marker recognised after the restart", orders_caught_up, timeout_s=20)
        paid = [(b"m-3", payout("p2", "m-3", 15000))]
        await kafka_io.produce(settings.kafka_bootstrap, settings.topics.payouts, paid)
        await wait_for("second freeze", lambda: frozen(2))
        degraded = metric(worker, "fraud_decisions_degraded_total")
    finally:
        await producer.stop()
        worker.stop()
    alerts = await decisions(settings, settings.topics.alerts)
    freezes = await decisions(settings, settings.topics.fund_freezes)
    print(f"\nalerts {len(alerts)}, fund freezes {len(freezes)}, degraded {degraded}")
    assert all("degraded" not in a["evidence"] for a in alerts), alerts
    assert sorted(f["merchant_id"] for f in freezes) == ["m-1", "m-3"] and degraded == 0
