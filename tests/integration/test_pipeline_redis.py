"""The pipeline (decode → store → rules → incidents → outputs) on real Redis,
without Kafka: idempotency, redelivery after a crash, event-time windows."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import NamedTuple

import orjson
import pytest

from detectors.events import Topic
from detectors.rules import EntityType
from stream.codec import SourceRecord
from stream.pipeline import ORDER_LOG, Pipeline
from stream.settings import Settings
from stream.store.redis_store import RedisStore
from tests.integration.services import Services, order_json

NOW = 1_900_000_000_000


class Env(NamedTuple):
    settings: Settings
    store: RedisStore
    pipeline: Pipeline


@pytest.fixture
async def env(services: Services) -> AsyncIterator[Env]:
    settings = services.settings(velocity_threshold=5, velocity_window_s=600)
    store = RedisStore.from_url(settings.redis_url, settings.redis_namespace, 2.0)
    await store.start()
    yield Env(settings, store, Pipeline(settings, store))
    await store.drop_namespace()
    await store.close()


def records(values: list[bytes], partition: int = 0, first_offset: int = 0) -> list[SourceRecord]:
    return [
        SourceRecord("orders", partition, first_offset + i, b"m-1", v, NOW)
        for i, v in enumerate(values)
    ]


def at(minute: int, second: int = 0) -> str:
    return f"2026-11-02T12:{minute:02d}:{second:02d}Z"


def alert_ids(outputs: list, topic: str) -> list[str]:  # type: ignore[type-arg]
    return [orjson.loads(o.value)["alert_id"] for o in outputs if o.topic == topic]


async def test_burst_alerts_once_and_normal_user_never(env: Env) -> None:
    settings = env.settings
    pipeline = env.pipeline
    burst = [order_json(f"b{i}", "bursty", at(i)) for i in range(8)]
    calm = [order_json(f"c{i}", "calm", at(0) if i == 0 else at(59)) for i in range(2)]
    result = await pipeline.process(Topic.ORDERS, records(burst + calm), NOW)
    alerts = [orjson.loads(o.value) for o in result.outputs if o.topic == settings.topics.alerts]
    assert len(alerts) == 1
    (alert,) = alerts
    assert alert["entity_id"] == "bursty" and alert["observed"] == 5
    assert alert["trigger_event_id"] == "b4"
    assert alert["evidence"]["event_ids"] == ["b0", "b1", "b2", "b3", "b4"]


async def test_replaying_a_batch_changes_nothing(env: Env) -> None:
    settings = env.settings
    store = env.store
    pipeline = env.pipeline
    batch = records([order_json(f"b{i}", "u", at(i)) for i in range(6)])
    first = await pipeline.process(Topic.ORDERS, batch, NOW)
    members = await store.log_members(EntityType.USER, "u", ORDER_LOG)
    # Upstream duplicates: same event ids, new offsets.
    dup = await pipeline.process(
        Topic.ORDERS,
        records([order_json(f"b{i}", "u", at(i)) for i in range(6)], partition=1, first_offset=100),
        NOW,
    )
    assert await store.log_members(EntityType.USER, "u", ORDER_LOG) == members
    assert alert_ids(dup.outputs, settings.topics.alerts) == []
    # Redelivery at the same positions (e.g. the commit never happened):
    # the stored alert is republished with the same id, nothing new.
    again = await pipeline.process(Topic.ORDERS, batch, NOW + 5000)
    assert alert_ids(again.outputs, settings.topics.alerts) == alert_ids(
        first.outputs, settings.topics.alerts
    )
    assert [o.value for o in again.outputs] == [o.value for o in first.outputs]


async def test_crash_between_store_calls_still_alerts_on_redelivery(env: Env) -> None:
    settings = env.settings
    store = env.store
    pipeline = env.pipeline
    batch = records([order_json(f"b{i}", "u", at(i)) for i in range(5)])

    class Crash(Exception):
        pass

    real_claim = store.claim_incidents

    async def crash(*a, **k):  # type: ignore[no-untyped-def]
        raise Crash

    store.claim_incidents = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await pipeline.process(Topic.ORDERS, batch, NOW)
    store.claim_incidents = real_claim  # type: ignore[method-assign]
    result = await pipeline.process(Topic.ORDERS, batch, NOW)
    assert len(alert_ids(result.outputs, settings.topics.alerts)) == 1


async def test_out_of_order_events_count_by_event_time(env: Env) -> None:
    settings = env.settings
    pipeline = env.pipeline
    # Five orders within ten minutes of event time, arriving shuffled and
    # interleaved with two orders from an hour later that must not count.
    inside = [order_json(f"i{i}", "u", at(10 + 2 * i)) for i in range(5)]
    outside = [order_json(f"o{i}", "u", f"2026-11-02T14:0{i}:00Z") for i in range(2)]
    values = inside[:2] + outside + inside[2:]
    random.Random(7).shuffle(values)
    result = await pipeline.process(Topic.ORDERS, records(values), NOW)
    alerts = [orjson.loads(o.value) for o in result.outputs if o.topic == settings.topics.alerts]
    assert len(alerts) == 1
    assert sorted(alerts[0]["evidence"]["event_ids"]) == [f"i{i}" for i in range(5)]
    assert alerts[0]["window"]["start"] == "2026-11-02T12:10:00.000Z"


async def test_four_in_window_plus_one_just_outside_is_silent(env: Env) -> None:
    settings = env.settings
    pipeline = env.pipeline
    values = [order_json(f"e{i}", "u", at(i * 2)) for i in range(4)]
    values.append(order_json("late", "u", at(16)))  # 12:16 is 16 min after 12:00 → own window
    values.reverse()
    result = await pipeline.process(Topic.ORDERS, records(values), NOW)
    assert alert_ids(result.outputs, settings.topics.alerts) == []


async def test_invalid_records_become_dead_letters_and_valid_ones_still_count(env: Env) -> None:
    settings = env.settings
    store = env.store
    pipeline = env.pipeline
    values = [order_json("a", "u", at(0)), b"{", order_json("b", "u", at(1))]
    result = await pipeline.process(Topic.ORDERS, records(values), NOW)
    dlq = [orjson.loads(o.value) for o in result.outputs if o.topic == settings.topics.dlq]
    assert [d["offset"] for d in dlq] == [1]
    assert await store.log_members(EntityType.USER, "u", ORDER_LOG) == ["a", "b"]


async def test_other_topics_are_validated_without_touching_order_counters(env: Env) -> None:
    pipeline = env.pipeline
    payout = orjson.dumps(
        {
            "event_id": "p1",
            "occurred_at": at(0),
            "payout_id": "p",
            "merchant_id": "m",
            "amount_minor": 5,
            "currency": "EUR",
            "destination_fingerprint": "f",
        }
    )
    result = await pipeline.process(
        Topic.PAYOUTS,
        [
            SourceRecord("payouts", 0, 0, None, payout, NOW),
            SourceRecord("payouts", 0, 1, None, b"[]", NOW),
        ],
        NOW,
    )
    assert result.valid == 1 and len(result.dead_letters) == 1
