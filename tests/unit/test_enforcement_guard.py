"""The guardrails in the pipeline (in-memory store): a misfiring rule is
stopped at its budget and demoted, a flood of fund freezes trips the
breaker, the alerts of the freezes not made are marked, and the same
events decide the same whenever they are processed (event time)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import orjson

from detectors.control import Breaker, BreakerState, ControlRecord, Provenance, RuleMode
from detectors.control_snapshot import EMPTY, fold
from detectors.decisions import Alert, Freeze, Suppression
from detectors.events import Event, Topic
from detectors.guardrails import bucket_of
from detectors.rulebook import parse_rulebook
from detectors.rules import ActionKind, Mode, Rule, Severity
from detectors.rules_entities import EntityType
from detectors.timestamps import parse_rfc3339_ms
from stream.codec import Decoded, Incoming, SourceRecord
from stream.enforcement_guard import Candidate, EnforcementGuard
from stream.pipeline import BatchResult, Pipeline
from stream.settings import Settings
from stream.store.guard_counters import GuardCounters, MemoryGuardCounters
from stream.store.memory_store import MemoryStore
from tests.integration.services import order_json
from tests.store_cases.requests import process

NOW = 1_900_000_000_000


def rule_yaml(rule_id: str, topic: str, entity: str, action: str, budget: int) -> str:
    """A rule that fires on every event of `topic` (threshold 1): a misfire."""
    return f"""\
  - id: {rule_id}
    version: 1
    triggers: [{topic}]
    entity: {entity}
    metric: {{kind: count, topics: [{topic}], window: 10m}}
    compare: ">="
    threshold: 1
    severity: high
    action: {action}
    guardrail: {{freeze_budget_10m: {budget}}}
"""


BENEFIT = "{type: benefit_freeze, scope: vouchers, duration: 1d}"
FUND = "{type: fund_freeze, scope: payout, duration: 1d}"
RULES = (
    "rules:\n"
    + rule_yaml("misfire", "orders", "user", BENEFIT, 3)
    + rule_yaml("payout_flood", "payouts", "merchant", FUND, 1000)
)


def at(minute: int, second: int = 0) -> str:
    return f"2026-11-02T12:{minute:02d}:{second:02d}Z"


def payout_json(event_id: str, merchant: str, when: str, amount: int = 1000) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": when,
            "payout_id": f"p-{event_id}",
            "merchant_id": merchant,
            "amount_minor": amount,
            "currency": "EUR",
            "destination_fingerprint": "sha256:abc",
        }
    )


def records(topic: str, values: list[bytes], first: int = 0) -> list[SourceRecord]:
    return [SourceRecord(topic, 0, first + i, b"k", v, NOW) for i, v in enumerate(values)]


def build(tmp_path: Path, **settings: Any) -> tuple[Pipeline, list[ControlRecord]]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    s = Settings(rules_file=rules, breaker_min_freezes=4, **settings)
    store = MemoryStore()
    pipeline = Pipeline(s, store, parse_rulebook(RULES))
    published: list[ControlRecord] = []
    pipeline.guard.on_control = published.append
    return pipeline, published


def decoded(result: BatchResult, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in result.outputs if o.topic == topic]


async def test_a_misfiring_rule_freezes_its_budget_then_is_demoted(tmp_path: Path) -> None:
    pipeline, published = build(tmp_path)
    topics = pipeline.settings.topics
    orders = [order_json(f"o{i}", f"u{i}", at(1, i)) for i in range(10)]
    result = await process(pipeline, Topic.ORDERS, records("orders", orders), NOW)
    alerts = decoded(result, topics.alerts)
    freezes = decoded(result, topics.benefit_freezes)
    assert len(alerts) == 10 and len(freezes) == 3
    marked = [a for a in alerts if a.get("suppressed_by") == "guardrail"]
    assert len(marked) == 7 and result.suppressed == {Suppression.GUARDRAIL: 7}
    assert {f["subject_id"] for f in freezes} == {"u0", "u1", "u2"}
    (record,) = published
    assert isinstance(record, RuleMode) and record.meta.actor == "guardrail"
    assert "3 distinct entities" in record.meta.reason
    assert pipeline.control.rule_mode("misfire") is record.mode  # steers this worker at once
    later = [order_json(f"p{i}", f"v{i}", at(3, i)) for i in range(3)]
    after = await process(pipeline, Topic.ORDERS, records("orders", later, 10), NOW)
    assert [a["mode"] for a in decoded(after, topics.alerts)] == ["shadow"] * 3
    assert decoded(after, topics.benefit_freezes) == []
    assert len(published) == 1
    print(f"guardrail (memory): budget 3, {len(freezes)} freezes, {len(marked)} alerts marked")


async def test_a_flood_of_fund_freezes_trips_the_breaker_until_a_reset(tmp_path: Path) -> None:
    pipeline, published = build(tmp_path)
    topics = pipeline.settings.topics
    payouts = [payout_json(f"e{i}", f"m{i}", at(2, i)) for i in range(10)]
    result = await process(pipeline, Topic.PAYOUTS, records("payouts", payouts), NOW)
    alerts = decoded(result, topics.alerts)
    freezes = decoded(result, topics.fund_freezes)
    assert len(alerts) == 10 and len(freezes) == 4  # max(4, 0.01 x 10 merchants)
    assert sum(a.get("suppressed_by") == "breaker" for a in alerts) == 6
    (record,) = published
    assert isinstance(record, Breaker) and record.state is BreakerState.TRIPPED
    assert "4 fund freezes, limit 4 for 10 active merchants" in record.meta.reason
    assert pipeline.control.breaker_tripped
    # Benefit freezes are not the breaker's business.
    order = records("orders", [order_json("o1", "u1", at(2))])
    assert (
        len(decoded(await process(pipeline, Topic.ORDERS, order, NOW), topics.benefit_freezes)) == 1
    )
    reset = Breaker(BreakerState.RESET, Provenance("reset-1", "alice", "drill over", NOW))
    pipeline.control = fold([("breaker", reset)], pipeline.control)
    more = [payout_json(f"f{i}", f"n{i}", at(3, i)) for i in range(2)]
    again = await process(pipeline, Topic.PAYOUTS, records("payouts", more, 10), NOW)
    assert len(decoded(again, topics.fund_freezes)) == 2
    print(f"breaker (memory): {len(freezes)} fund freezes, then tripped; 2 after a reset")


async def test_the_value_cap_trips_the_breaker_per_currency(tmp_path: Path) -> None:
    from detectors.money import PerCurrency

    pipeline, published = build(tmp_path, breaker_value_caps=PerCurrency.of({"EUR": 2500}))
    payouts = [payout_json(f"e{i}", f"m{i}", at(2, i), amount=1000) for i in range(3)]
    result = await process(pipeline, Topic.PAYOUTS, records("payouts", payouts), NOW)
    assert len(decoded(result, pipeline.settings.topics.fund_freezes)) == 2
    (record,) = published
    assert "2000 EUR held, cap 2500" in record.meta.reason


async def test_the_same_events_decide_the_same_whenever_processed(tmp_path: Path) -> None:
    """Event-time buckets: a backtest next month equals the live run."""
    outcomes = []
    for now in (NOW, NOW + 30 * 86_400_000):
        pipeline, _ = build(tmp_path)
        orders = [order_json(f"o{i}", f"u{i}", at(1 + i // 4, i)) for i in range(12)]
        result = await process(pipeline, Topic.ORDERS, records("orders", orders), now)
        freezes = decoded(result, pipeline.settings.topics.benefit_freezes)
        outcomes.append(sorted(f["freeze_id"] for f in freezes))
    assert outcomes[0] == outcomes[1] and len(outcomes[0]) == 3


class Counting(MemoryGuardCounters):
    def __init__(self) -> None:
        super().__init__()
        self.noted: list[tuple[int, list[str]]] = []

    async def note_merchants(self, bucket: int, merchants: Collection[str]) -> None:
        self.noted.append((bucket, sorted(merchants)))
        await super().note_merchants(bucket, merchants)


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.counting = Counting()

    def guard_counters(self) -> GuardCounters:
        return self.counting


async def test_a_worker_sends_each_merchant_once_per_bucket_and_at_most_once_a_second() -> None:
    rules = parse_rulebook(RULES).rules
    store, clock = CountingStore(), [0.0]
    guard = EnforcementGuard(Settings(), store, rules, clock=lambda: clock[0])
    bucket = bucket_of(parse_rfc3339_ms(at(1)))
    await guard.note_merchants([order("a", "m1", at(1)), order("b", "m2", at(1))])
    assert store.counting.noted == []  # within the second: kept for the next flush
    clock[0] = 1.0
    await guard.note_merchants([order("c", "m1", at(2)), order("d", "m3", at(2))])
    assert store.counting.noted == [(bucket, ["m1", "m2", "m3"])]
    clock[0] = 2.5
    await guard.note_merchants([order("e", "m1", at(3)), order("f", "m1", at(11))])
    assert store.counting.noted[1:] == [(bucket + 1, ["m1"])]  # m1 was noted in `bucket`
    # The breaker flushes first, whatever the clock: its count includes every merchant seen.
    await guard.note_merchants([order("g", "m4", at(12))])
    payout = payout_json("p", "m5", at(12))
    item = Incoming.read(Topic.PAYOUTS, records("payouts", [payout])[0], 4096)
    assert isinstance(item.decoded, Decoded)
    await guard.note_merchants([item.decoded.event])
    assert len(store.counting.noted) == 2
    await guard.judge([candidate(guard, item.decoded.event, rules)], EMPTY, NOW)
    assert store.counting.noted[2:] == [(bucket + 1, ["m4", "m5"])]
    # Without a rule that can freeze funds the breaker has no use for them.
    benefit_only = [r for r in rules if r.action.kind is not ActionKind.FUND_FREEZE]
    idle = CountingStore()
    quiet = EnforcementGuard(Settings(), idle, benefit_only, clock=lambda: clock[0])
    await quiet.note_merchants([order("a", "m1", at(1))])
    clock[0] = 10.0
    await quiet.note_merchants([order("b", "m2", at(1))])
    assert idle.counting.noted == []


def candidate(guard: EnforcementGuard, event: Event, rules: Sequence[Rule]) -> Candidate:
    (rule,) = [r for r in rules if r.action.kind is ActionKind.FUND_FREEZE]
    freeze = Freeze(
        "fz_1", ActionKind.FUND_FREEZE, EntityType.MERCHANT, "m5", "payouts", rule.rule_id,
        Severity.HIGH, "al_1", NOW + 1, NOW,
    )  # fmt: skip
    alert = Alert(
        "al_1", rule.rule_id, 1, Severity.HIGH, EntityType.MERCHANT, "m5", 600_000, NOW, 1, 1,
        "p", "payouts", NOW, NOW, Mode.ENFORCE,
    )  # fmt: skip
    return Candidate(rule, freeze, alert, event, 0)


def order(event_id: str, merchant: str, when: str) -> Event:
    item = Incoming.read(
        Topic.ORDERS, records("orders", [order_json(event_id, "u", when, merchant)])[0], 4096
    )
    assert isinstance(item.decoded, Decoded)
    return item.decoded.event
