"""Alerts list the events they counted (detectors.counted): the ring the
store read with the value, cut at the trigger and to the alert's window,
the same however the events were batched."""

from __future__ import annotations

import orjson
import pytest

from detectors.counted import counted_ids
from detectors.engine import Plan
from detectors.errors import ConfigError
from detectors.events import Order, Refund, Topic
from detectors.rulebook import parse_rulebook
from stream.codec import SourceRecord
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings, from_env
from stream.store.base import StoreConfig
from stream.store.memory_store import MemoryStore
from tests.integration.services import TEST_KEY_HASH_SECRET
from tests.store_cases.requests import process
from tests.unit.test_rulebook import book

SETTINGS = Settings(key_hash_secret=TEST_KEY_HASH_SECRET)
NOW = 1_900_000_000_000
RULE = "user_order_velocity_10m"  # 8 orders of a user in 10 minutes


def order(i: int, minute: int, second: int = 0) -> SourceRecord:
    value = {
        "event_id": f"e{i}",
        "occurred_at": f"2027-01-15T08:{minute:02d}:{second:02d}Z",
        "order_id": f"o{i}",
        "user_id": "u1",
        "merchant_id": f"m{i}",
        "amount_minor": 900,
        "currency": "EUR",
    }
    return SourceRecord("orders", 0, i, b"u1", orjson.dumps(value), 0)


async def velocity_alerts(batch: int, counted_events: int = 20) -> list[dict[str, object]]:
    """Two early orders that leave the window, then ten a minute apart."""
    records = [order(0, 0), order(1, 1)] + [order(i, 20 + i) for i in range(2, 12)]
    store = MemoryStore(StoreConfig(counted_events=counted_events))
    pipeline = Pipeline(SETTINGS, store, load_rulebook(SETTINGS))
    alerts = []
    for start in range(0, len(records), batch):
        result = await process(pipeline, Topic.ORDERS, records[start : start + batch], NOW)
        for out in result.outputs:
            if out.topic == SETTINGS.topics.alerts:
                wire = orjson.loads(out.value)
                if wire["rule_id"] == RULE:
                    alerts.append(wire)
    return alerts


async def test_the_alert_lists_the_orders_counted_in_its_window() -> None:
    (alert,) = await velocity_alerts(batch=200)
    assert alert["trigger_event_id"] == "e9" and alert["observed"] == 8
    assert alert["counted_event_ids"] == [f"e{i}" for i in range(2, 10)]


async def test_the_list_does_not_depend_on_batching() -> None:
    whole = await velocity_alerts(batch=200)
    assert await velocity_alerts(batch=1) == whole
    assert await velocity_alerts(batch=5) == whole


async def test_without_rings_the_alert_lists_nothing() -> None:
    (alert,) = await velocity_alerts(batch=200, counted_events=0)
    assert "counted_event_ids" not in alert


async def test_a_small_ring_lists_the_newest() -> None:
    (alert,) = await velocity_alerts(batch=200, counted_events=3)
    assert alert["counted_event_ids"] == ["e7", "e8", "e9"]


def test_the_list_stops_at_the_trigger_and_keeps_to_the_window() -> None:
    ring = ((100, "a"), (200, "b"), (300, "c"), (400, "d"))
    assert counted_ids(ring, "c", 300, 150, 1_000) == ("b", "c")  # d came after c
    assert counted_ids(ring, "x", 300, 0, 1_000) == ("a", "b", "c")  # by time without it
    assert counted_ids(ring, "d", 400, 0, 300) == ("a", "b")  # window [0, 300)
    assert counted_ids((), "d", 400, 0, 300) == ()


def test_the_ring_size_is_bounded() -> None:
    assert from_env({"FRAUD_COUNTED_EVENTS": "1000"}).counted_events == 1000
    for bad in ("1001", "-1", "many"):
        with pytest.raises(ConfigError, match="FRAUD_COUNTED_EVENTS"):
            from_env({"FRAUD_COUNTED_EVENTS": bad})


CROSS_TOPIC = """\
- id: refund_after_orders
  version: 1
  triggers: [refunds]
  entity: user
  metric: {kind: count, topics: [orders], window: 10m}
  compare: ">="
  threshold: 5
  severity: high
- id: refund_ratio
  version: 1
  triggers: [refunds]
  entity: user
  metric:
    kind: ratio
    window: 1h
    numerator: {kind: count, topics: [refunds]}
    denominator: {kind: count, topics: [orders]}
  compare: ">="
  threshold: 0.5
  severity: high
"""


def _ringed(plan: Plan, topic: Topic) -> dict[str, tuple[bool, bool]]:
    """Per aggregate of the topic's user group: (keeps a ring, reports it)."""
    event = {
        Topic.ORDERS: Order("e", 0, "o", "u", "m", 100, "EUR"),
        Topic.REFUNDS: Refund("e", 0, "r", "o", "u", "m", 100, "EUR"),
    }[topic]
    (req,) = [r for r in plan.requests(topic, event) if r.entity_ids == ("u",)]
    group = req.group
    return {
        s.agg_id: (group.keeps_ring(i), group.floor(i) is not None)
        for i, s in enumerate(group.specs)
    }


def test_rings_are_kept_where_a_rule_on_any_topic_lists_them() -> None:
    """The orders topic writes the ring of the count a refunds rule lists,
    though no orders rule reads it; a ratio's denominator keeps none."""
    rulebook = parse_rulebook(book(CROSS_TOPIC))
    plan = Plan(rulebook)
    by_id = {r.rule_id: r for r in rulebook.rules}
    listed = by_id["refund_after_orders"].metric.aggregate.agg_id
    ratio = by_id["refund_ratio"].metric
    numerator, denominator = (s.agg_id for s in ratio.aggregates())
    on_orders, on_refunds = _ringed(plan, Topic.ORDERS), _ringed(plan, Topic.REFUNDS)
    assert on_orders[listed] == (True, False)  # written here, read on refunds
    assert on_refunds[listed] == (True, True)
    assert on_refunds[numerator][0] is True
    assert on_orders[denominator] == (False, False) and on_refunds[denominator][0] is False
