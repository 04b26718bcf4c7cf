"""The pipeline (decode → store → rules → incidents → outputs) on either
store backend, without Kafka: idempotency, redelivery after a crash,
event-time windows, freezes combined across rules, dead letters."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import orjson
import pytest

from detectors.engine import AggregateRequest
from detectors.events import Topic
from detectors.rulebook import Rulebook
from detectors.timestamps import parse_rfc3339_ms
from stream.codec import Incoming, SourceRecord
from stream.delivery import SettledRecords
from stream.pipeline import BatchResult, OutputRecord, Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store.base import EventStatus, EventStore
from tests.integration.services import order_json, write_test_rules
from tests.store_cases.backends import Stores
from tests.store_cases.requests import event_requests, process

NOW = 1_900_000_000_000


class Env(NamedTuple):
    settings: Settings
    store: EventStore
    pipeline: Pipeline
    rulebook: Rulebook


def records(
    values: list[bytes], partition: int = 0, first_offset: int = 0, topic: str = "orders"
) -> list[SourceRecord]:
    return [
        SourceRecord(topic, partition, first_offset + i, b"m-1", v, NOW)
        for i, v in enumerate(values)
    ]


def at(minute: int, second: int = 0, hour: int = 12) -> str:
    return f"2026-11-02T{hour:02d}:{minute:02d}:{second:02d}Z"


def on(outputs: list[OutputRecord], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in outputs if o.topic == topic]


async def order_count(env: Env, user: str, when: str) -> int:
    """The velocity rule's count for `user` in the window ending at `when` (read only)."""
    (rule,) = [r for r in env.rulebook.rules if r.rule_id == "user_order_velocity"]
    req = AggregateRequest(rule.metric.aggregate, (user,), None)
    (obs,) = await env.store.apply([event_requests("probe", parse_rfc3339_ms(when), [req])])
    value = obs.values[rule.metric.aggregate.agg_id].value
    assert value is not None
    return value


class PipelineCases:
    @pytest.fixture
    async def env(self, stores: Stores, tmp_path: Path) -> AsyncIterator[Env]:
        settings = stores.settings(rules_file=write_test_rules(tmp_path))
        async with stores.scratch(settings) as store:
            rulebook = load_rulebook(settings)
            yield Env(settings, store, Pipeline(settings, store, rulebook), rulebook)

    async def test_burst_alerts_once_and_normal_user_never(self, env: Env) -> None:
        burst = [order_json(f"b{i}", "bursty", at(i)) for i in range(8)]
        calm = [order_json(f"c{i}", "calm", at(0) if i == 0 else at(59)) for i in range(2)]
        result = await process(env.pipeline, Topic.ORDERS, records(burst + calm), NOW)
        (alert,) = on(result.outputs, env.settings.topics.alerts)
        assert alert["entity_id"] == "bursty" and alert["observed"] == 5
        assert alert["trigger_event_id"] == "b4"
        assert alert["evidence"] == {"aggregate": "count", "value": 5}
        assert alert["window"]["length_ms"] == 600_000

    async def test_replaying_a_batch_changes_nothing(self, env: Env) -> None:
        batch = records([order_json(f"b{i}", "u", at(i)) for i in range(6)])
        first = await process(env.pipeline, Topic.ORDERS, batch, NOW)
        assert await order_count(env, "u", at(5)) == 6
        # Upstream duplicates: same event ids, new offsets.
        dup = await process(
            env.pipeline,
            Topic.ORDERS,
            records(
                [order_json(f"b{i}", "u", at(i)) for i in range(6)], partition=1, first_offset=100
            ),
            NOW,
        )
        assert await order_count(env, "u", at(5)) == 6
        assert on(dup.outputs, env.settings.topics.alerts) == []
        # Redelivery at the same positions (the commit never happened): the stored
        # alert is republished byte for byte, nothing new.
        again = await process(env.pipeline, Topic.ORDERS, batch, NOW + 5000)
        assert [o.value for o in again.outputs] == [o.value for o in first.outputs]
        assert len(first.outputs) == 1

    async def test_crash_between_store_calls_still_alerts_on_redelivery(self, env: Env) -> None:
        batch = records([order_json(f"b{i}", "u", at(i)) for i in range(5)])

        class Crash(Exception):
            pass

        real_claim = env.store.claim_incidents

        async def crash(*a: object, **k: object) -> None:
            raise Crash

        env.store.claim_incidents = crash  # type: ignore[method-assign,assignment]
        with pytest.raises(Crash):
            await process(env.pipeline, Topic.ORDERS, batch, NOW)
        env.store.claim_incidents = real_claim  # type: ignore[method-assign]
        result = await process(env.pipeline, Topic.ORDERS, batch, NOW)
        assert len(on(result.outputs, env.settings.topics.alerts)) == 1

    async def test_out_of_order_events_count_by_event_time(self, env: Env) -> None:
        # Five orders within ten minutes of event time, arriving shuffled among two
        # orders 50 minutes later (within the allowed lateness) that must not join.
        inside = [order_json(f"i{i}", "u", at(10 + 2 * i)) for i in range(5)]
        outside = [order_json(f"o{i}", "u", at(i, hour=13)) for i in range(2)]
        values = outside + inside
        random.Random(7).shuffle(values)
        values = outside + [v for v in values if v not in outside]  # the late ones arrive last
        result = await process(env.pipeline, Topic.ORDERS, records(values), NOW)
        (alert,) = on(result.outputs, env.settings.topics.alerts)
        assert alert["observed"] == 5 and alert["trigger_event_id"].startswith("i")
        assert alert["window"]["start"] == "2026-11-02T12:08:30.000Z"

    async def test_four_in_window_plus_one_just_outside_is_silent(self, env: Env) -> None:
        values = [order_json(f"e{i}", "u", at(i * 2)) for i in range(4)]
        values.append(order_json("late", "u", at(16)))
        values.reverse()
        result = await process(env.pipeline, Topic.ORDERS, records(values), NOW)
        assert on(result.outputs, env.settings.topics.alerts) == []

    async def test_invalid_and_future_records_are_dead_lettered(self, env: Env) -> None:
        future = "2031-01-01T00:00:00Z"  # NOW is 2030-03-17
        values = [
            order_json("a", "u", at(0)),
            b"{",
            order_json("b", "u", at(1)),
            order_json("f", "u", future),
        ]
        result = await process(env.pipeline, Topic.ORDERS, records(values), NOW)
        dlq = on(result.outputs, env.settings.topics.dlq)
        assert [(d["offset"], d["error"]["kind"]) for d in dlq] == [
            (1, "invalid_json"),
            (3, "bad_time"),
        ]
        assert await order_count(env, "u", at(1)) == 2

    async def test_rules_firing_together_give_one_freeze_with_the_strongest_scope(
        self, env: Env
    ) -> None:
        values = [
            orjson.dumps(
                {
                    "event_id": f"r{i}",
                    "occurred_at": at(i),
                    "redemption_id": f"rd{i}",
                    "voucher_id": "v",
                    "user_id": f"acct-{i}",
                    "merchant_id": "m",
                    "face_value_minor": 1000,
                    "subsidy_minor": 500,
                    "currency": "EUR",
                    "device_id": "farm-tablet",
                }
            )
            for i in range(4)
        ]
        result = await process(
            env.pipeline,
            Topic.VOUCHER_REDEMPTIONS,
            records(values, topic="voucher-redemptions"),
            NOW,
        )
        alerts = on(result.outputs, env.settings.topics.alerts)
        assert sorted(a["rule_id"] for a in alerts) == [
            "device_voucher_accounts",
            "device_voucher_accounts_strict",
        ]
        (freeze,) = on(result.outputs, env.settings.topics.benefit_freezes)
        assert freeze["scope"] == "all_benefits" and freeze["subject_id"] == "farm-tablet"
        assert freeze["rule_id"] == "device_voucher_accounts_strict"
        assert freeze["expires_at"] == "2026-11-16T12:02:00.000Z"
        assert freeze["reason_alert_id"] in {a["alert_id"] for a in alerts}

    async def test_events_older_than_the_allowed_lateness_are_counted_as_late(
        self, env: Env
    ) -> None:
        newest = [order_json("n", "u", at(0, hour=14))]
        await process(env.pipeline, Topic.ORDERS, records(newest), NOW)
        old = await process(
            env.pipeline, Topic.ORDERS, records([order_json("o", "u", at(0))], 0, 1), NOW
        )
        assert old.late_values == 1  # two hours late: beyond the 10 min window + 1 h lateness
        assert await order_count(env, "u", at(0, hour=14)) == 1

    @pytest.mark.parametrize(
        ("counted", "threshold"), [("[orders]", 3), ("[orders, refunds]", 4)], ids=["reads", "adds"]
    )
    async def test_a_delivered_record_is_not_judged_again_on_a_fuller_bucket(
        self, env: Env, tmp_path: Path, counted: str, threshold: int
    ) -> None:
        """A refund judged on the orders so far; one more order lands in the
        same bucket after it. Redelivered (new after a crash if it only reads,
        a duplicate if it adds), the refund's window now holds that order:
        judged again it would alert where the first judgement (and the
        backtest) did not. At or below its partition's delivered watermark it
        is not judged again; above it, it still is."""
        rules = _refund_rulebook(env.settings, tmp_path, counted, threshold)
        before_crash = _pipeline(env, rules, "group")
        first = await process_mixed(before_crash, *_two_orders_and_a_refund())
        assert on(first.outputs, env.settings.topics.alerts) == []
        await process_mixed(before_crash, _order_record("o3", "12:00:20.400", offset=2))
        await env.store.advance_delivered("group", {("orders", 0): 2, ("refunds", 0): 0})

        again = await process_mixed(_pipeline(env, rules, "group"), *_two_orders_and_a_refund())
        assert on(again.outputs, env.settings.topics.alerts) == []
        assert again.settled == {"orders": 2, "refunds": 1}

        # The same redelivery where the refund's outputs may be lost (no
        # watermark reaches it): judged again on the window as it is now.
        lost = _pipeline(env, rules, "a group that delivered nothing")
        rejudged = await process_mixed(lost, *_two_orders_and_a_refund())
        (alert,) = on(rejudged.outputs, env.settings.topics.alerts)
        assert alert["observed"] == threshold and rejudged.settled == {}

    async def test_only_records_up_to_the_watermark_are_spared(
        self, env: Env, tmp_path: Path
    ) -> None:
        """An upstream copy of the refund at a new offset is judged (as the
        backtest judges it), and so is a redelivered record past the watermark;
        once a partition's records pass its watermark it is not consulted again."""
        rules = _refund_rulebook(env.settings, tmp_path, "[orders, refunds]", 4)
        await process_mixed(_pipeline(env, rules, "group"), *_two_orders_and_a_refund())
        await env.store.advance_delivered("group", {("orders", 0): 0, ("refunds", 0): 0})
        reads: list[Sequence[tuple[str, int]]] = []
        settled = SettledRecords(partial(_counting, env.store.delivered, "group", reads))
        pipeline = Pipeline(env.settings, env.store, rules)
        pipeline.settled = settled
        redelivered = await process_mixed(pipeline, *_two_orders_and_a_refund())
        assert redelivered.settled == {"orders": 1, "refunds": 1}
        order = ("orders", EventStatus.DUPLICATE)
        assert redelivered.statuses == {order: 2, ("refunds", EventStatus.DUPLICATE): 1}
        await process_mixed(pipeline, _order_record("o3", "12:00:20.400", offset=2))
        copy = await process_mixed(pipeline, _refund_record("r1", "12:00:20", offset=1))
        assert copy.statuses == {("refunds", EventStatus.DUPLICATE): 1} and copy.settled == {}
        assert len(on(copy.outputs, env.settings.topics.alerts)) == 1
        assert reads == [[("orders", 0), ("refunds", 0)]]  # once per partition and assignment
        settled.forget()
        await process_mixed(pipeline, _order_record("o4", "12:00:21", offset=3))
        assert reads[1:] == [[("orders", 0)]]


REFUND_RULES = """\
ruleset: settled
ruleset_version: "1"
rules:
  - id: merchant_orders_at_refund
    version: 1
    triggers: [refunds]
    entity: merchant
    metric: {{kind: count, topics: {counted}, window: 10m}}
    compare: ">="
    threshold: {threshold}
    severity: high
"""


def _refund_rulebook(settings: Settings, directory: Path, counted: str, threshold: int) -> Rulebook:
    path = directory / "refund_rules.yaml"
    path.write_text(REFUND_RULES.format(counted=counted, threshold=threshold))
    return load_rulebook(settings.replace(rules_file=path))


def _pipeline(env: Env, rules: Rulebook, group: str) -> Pipeline:
    """A worker's pipeline, just started: no watermark read yet."""
    pipeline = Pipeline(env.settings, env.store, rules)
    pipeline.settled = SettledRecords(partial(env.store.delivered, group))
    return pipeline


async def _counting(
    read: Callable[[str, Sequence[tuple[str, int]]], Awaitable[dict[tuple[str, int], int]]],
    group: str,
    reads: list[Sequence[tuple[str, int]]],
    parts: Sequence[tuple[str, int]],
) -> dict[tuple[str, int], int]:
    reads.append(parts)
    return await read(group, parts)


def _order_record(event_id: str, clock: str, offset: int) -> Incoming:
    value = order_json(event_id, "u", f"2026-11-02T{clock}Z")
    return Incoming.read(Topic.ORDERS, SourceRecord("orders", 0, offset, b"m-1", value, NOW), 4096)


def _refund_record(event_id: str, clock: str, offset: int) -> Incoming:
    value = orjson.dumps(
        {
            **orjson.loads(order_json(event_id, "u", f"2026-11-02T{clock}Z")),
            "refund_id": f"rf-{event_id}",
            "initiated_by": "user",
        }
    )
    record = SourceRecord("refunds", 0, offset, b"m-1", value, NOW)
    return Incoming.read(Topic.REFUNDS, record, 4096)


def _two_orders_and_a_refund() -> list[Incoming]:
    return [
        _order_record("o1", "12:00:00", offset=0),
        _order_record("o2", "12:00:10", offset=1),
        _refund_record("r1", "12:00:20", offset=0),
    ]


async def process_mixed(pipeline: Pipeline, *items: Incoming) -> BatchResult:
    return await pipeline.process_mixed(items, NOW)
