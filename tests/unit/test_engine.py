"""The pure engine: what a rule decides from given observations (no store)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from detectors import engine
from detectors.aggregates import AggregateKind
from detectors.decisions import (
    AlertCandidate,
    Freeze,
    combine_freezes,
    freeze_for,
    incident_base,
)
from detectors.engine import Observation, Plan
from detectors.events import Order, Payout, Topic, VoucherRedemption
from detectors.rulebook import parse_rulebook
from detectors.rules import Rule, Severity
from detectors.timestamps import parse_rfc3339_ms
from tests.incident_ids import incident_alert_id

REPO = Path(__file__).resolve().parents[2]
BOOK = parse_rulebook((REPO / "stream/rulesets/default.yaml").read_text())
RULES = {r.rule_id: r for r in BOOK.rules}
T = parse_rfc3339_ms("2026-11-02T12:00:00Z")
DAY = 86_400_000

ORDER = Order("e1", T, "o1", "u1", "m1", 1500, "EUR", device_id="d1")
PAYOUT = Payout("p1", T, "po1", "m1", 600_000, "EUR", "iban-9")
REDEMPTION = VoucherRedemption("v1", T, "rd1", "vch", "u1", "m1", 1000, 400, "EUR", device_id="d1")


def judge(rule: Rule, event: object, topic: Topic, values: dict[str, int]) -> AlertCandidate | None:
    observed = {}
    for spec in rule.aggregates():
        key = (
            spec.kind.value
            if spec.kind.value != "count" or spec is rule.metric.aggregate
            else "den"
        )
        raw = values.get(key, values.get(spec.agg_id))
        observed[spec.agg_id] = Observation(raw, T + 1000)
    return engine.evaluate(rule, topic, topic.value, event, observed, T + 5)  # type: ignore[arg-type]


def test_velocity_fires_at_threshold_and_not_below() -> None:
    rule = RULES["user_order_velocity_10m"]
    fired_ = judge(rule, ORDER, Topic.ORDERS, {"count": 8})
    assert fired_ is not None and fired_.alert.observed == 8 and fired_.alert.margin == 0
    assert judge(rule, ORDER, Topic.ORDERS, {"count": 7}) is None


def test_alert_ids_number_incidents_not_events() -> None:
    base = incident_base("r", 1, ("u1",))
    assert base == incident_base("r", 1, ("u1",)) != incident_base("r", 2, ("u1",))
    first, second = incident_alert_id(base, 7, 1), incident_alert_id(base, 7, 2)
    assert first != second and first.startswith("al_") and len(first) == 35
    assert incident_base("r", 1, ("a|b", "c")) != incident_base("r", 1, ("a", "b|c"))


def test_too_late_observation_is_not_judged() -> None:
    rule = RULES["user_order_velocity_10m"]
    observed = {rule.metric.aggregate.agg_id: Observation(None, 0)}
    assert engine.evaluate(rule, Topic.ORDERS, "orders", ORDER, observed, T) is None


def test_ratio_needs_min_volume() -> None:
    rule = RULES["user_refund_ratio_30d"]
    num, den = rule.metric.aggregate, rule.metric.other
    assert den is not None
    refund = _refund()
    obs = {num.agg_id: Observation(3, T), den.agg_id: Observation(4, T)}
    assert engine.evaluate(rule, Topic.REFUNDS, "refunds", refund, obs, T) is None  # 4 < 5 orders
    obs[den.agg_id] = Observation(6, T)
    cand = engine.evaluate(rule, Topic.REFUNDS, "refunds", refund, obs, T)
    assert cand is not None and cand.alert.evidence["numerator"] == 3
    obs[num.agg_id] = Observation(2, T)
    assert engine.evaluate(rule, Topic.REFUNDS, "refunds", refund, obs, T) is None  # 2/6 < 0.5


def _refund():  # type: ignore[no-untyped-def]
    from detectors.events import Refund

    return Refund("r1", T, "rf1", "o1", "u1", "m1", 100, "EUR")


def _payout_obs(dest_first: int, merchant_first: int) -> dict[str, Observation]:
    rule = RULES["new_destination_large_payout"]
    (req,) = rule.requires
    return {
        rule.metric.aggregate.agg_id: Observation(dest_first, 0),
        req.first_seen.agg_id: Observation(merchant_first, 0),
    }


def test_new_destination_payout_needs_all_three_facts() -> None:
    rule = RULES["new_destination_large_payout"]
    hit = engine.evaluate(rule, Topic.PAYOUTS, "payouts", PAYOUT, _payout_obs(T, T - 30 * DAY), T)
    assert (hit is not None and hit.alert.evidence["age"] == "0ms") or hit is not None
    # destination known for a week: fine
    assert (
        engine.evaluate(
            rule, Topic.PAYOUTS, "payouts", PAYOUT, _payout_obs(T - 7 * DAY, T - 30 * DAY), T
        )
        is None
    )
    # brand-new merchant: its first destination is naturally new
    assert (
        engine.evaluate(rule, Topic.PAYOUTS, "payouts", PAYOUT, _payout_obs(T, T - DAY), T) is None
    )
    small = Payout("p2", T, "po2", "m1", 10_000, "EUR", "iban-9")
    assert (
        engine.evaluate(rule, Topic.PAYOUTS, "payouts", small, _payout_obs(T, T - 30 * DAY), T)
        is None
    )


def fired() -> list[AlertCandidate]:
    out = [judge(RULES["user_order_velocity_10m"], ORDER, Topic.ORDERS, {"count": 9})]
    rule = RULES["payout_exceeds_earnings_30d"]
    assert rule.metric.other is not None
    balance = {
        rule.metric.aggregate.agg_id: Observation(100_000, T),  # earned
        rule.metric.other.agg_id: Observation(700_000, T),  # refunded + paid out
    }
    out.append(engine.evaluate(rule, Topic.PAYOUTS, "payouts", PAYOUT, balance, T))
    rule = RULES["device_accounts_voucher_24h"]
    out.append(
        engine.evaluate(
            rule,
            Topic.VOUCHER_REDEMPTIONS,
            "voucher-redemptions",
            REDEMPTION,
            {rule.metric.aggregate.agg_id: Observation(6, T)},
            T,
        )
    )
    return [
        dataclasses.replace(
            c,
            alert=dataclasses.replace(
                c.alert,
                alert_id=incident_alert_id(incident_base(c.alert.rule_id, 1, c.entity_ids), 0, 1),
            ),
        )
        for c in out
        if c is not None
    ]


def freezes() -> list[Freeze]:
    out = []
    for cand in fired():
        rule = RULES[cand.alert.rule_id]
        payout = ("po1", 600_000, "EUR") if rule.rule_id == "payout_exceeds_earnings_30d" else None
        f = freeze_for(rule, cand.alert, "m1", payout)
        if f is not None:
            out.append(f)
    return out


def test_freezes_follow_the_rule_action() -> None:
    by_rule = {f.rule_id: f for f in freezes()}
    fund = by_rule["payout_exceeds_earnings_30d"]
    assert fund.scope == "payout:po1" and fund.amount_minor == 600_000
    assert fund.expires_at_ms == T + 3 * DAY
    benefit = by_rule["device_accounts_voucher_24h"]
    assert benefit.subject_type.value == "device" and benefit.subject_id == "d1"
    assert "user_order_velocity_10m" not in by_rule  # alert-only rule


def test_shadow_rules_never_freeze() -> None:
    rule = RULES["young_merchant_gmv_24h"]
    cand = fired()[0]
    assert freeze_for(rule, cand.alert, "m1", None) is None


def test_combined_freezes_keep_the_strongest() -> None:
    (f,) = [x for x in freezes() if x.kind.value == "benefit_freeze"]
    weaker = Freeze(
        **{**_fields(f), "freeze_id": "fz_other", "severity": Severity.LOW, "scope": "all_benefits"}
    )
    stronger = Freeze(**{**_fields(f), "freeze_id": "fz_strong", "severity": Severity.CRITICAL})
    assert combine_freezes([weaker, f]) == [f]
    assert combine_freezes([f, stronger, weaker]) == [stronger]


def _fields(f: Freeze) -> dict[str, object]:
    return {name: getattr(f, name) for name in f.__dataclass_fields__}


def test_plan_reads_what_rules_need_and_feeds_what_events_add() -> None:
    plan = Plan(BOOK)
    refund_reqs = [
        r for g in plan.requests(Topic.REFUNDS, _refund()) for r in g.aggregate_requests()
    ]
    kinds = sorted((r.spec.kind.value, r.contribution is not None) for r in refund_reqs)
    # the refund feeds the refund count and merchant first-seen, reads the order count
    assert ("count", False) in kinds and ("count", True) in kinds


def test_a_balance_over_two_different_windows_decides_nothing() -> None:
    """A redelivered payout's debits come from the busiest window around it
    (later payouts included) while its credits are read at its own time."""
    rule = RULES["payout_exceeds_earnings_30d"]
    assert rule.metric.other is not None
    credit, debit = rule.metric.aggregate.agg_id, rule.metric.other.agg_id
    aligned = {credit: Observation(100_000, T), debit: Observation(700_000, T)}
    assert engine.evaluate(rule, Topic.PAYOUTS, "payouts", PAYOUT, aligned, T) is not None
    later = {credit: Observation(100_000, T), debit: Observation(700_000, T + 3_600_000)}
    assert engine.evaluate(rule, Topic.PAYOUTS, "payouts", PAYOUT, later, T) is None


def test_plan_asks_for_the_ids_each_spec_would_read_from_the_event() -> None:
    """The plan's precomputed entity lookups agree with AggregateSpec.entity_ids
    (payouts name their payment entity by destination, buyers by card)."""
    plan = Plan(BOOK)
    for topic, event in ((Topic.REFUNDS, _refund()), (Topic.PAYOUTS, PAYOUT)):
        groups = plan.requests(topic, event)
        assert groups
        for g in groups:
            for spec in g.group.specs:
                assert spec.entity_ids(event) == g.entity_ids


def test_an_aggregate_requested_twice_for_one_entity_is_refused() -> None:
    spec = RULES["payout_exceeds_earnings_30d"].metric.aggregate
    twice = [engine.AggregateRequest(spec, ("m-1",), 5), engine.AggregateRequest(spec, ("m-1",), 7)]
    with pytest.raises(ValueError, match="requested twice"):
        engine.group_requests(twice)


def test_a_hand_built_contribution_of_the_wrong_type_is_refused() -> None:
    """The store passes contributions to its script as they are."""
    total = RULES["payout_exceeds_earnings_30d"].metric.aggregate  # a sum
    members = next(
        s for r in BOOK.rules for s in r.aggregates() if s.kind is AggregateKind.DISTINCT
    )
    for spec, bad in ((total, True), (total, "5"), (members, 7)):
        with pytest.raises(TypeError, match="contribution"):
            engine.group_requests([engine.AggregateRequest(spec, ("x",) * len(spec.entity), bad)])
    ok = [
        engine.AggregateRequest(total, ("m-1",), 5),
        engine.AggregateRequest(members, ("x",) * len(members.entity), "u-1"),
        engine.AggregateRequest(total, ("m-2",), None),
    ]
    assert len(engine.group_requests(ok)) == 3


def test_only_refused_updates_count_as_late_not_reads_no_rule_needed() -> None:
    """A group reads aggregates whatever the rules' conditions; a read that
    comes back too late is not a lost update."""
    from stream.pipeline import _late_updates

    plan = Plan(BOOK)
    groups = plan.requests(Topic.PAYOUTS, PAYOUT)
    pairs = [
        (s.agg_id, c) for g in groups for s, c in zip(g.group.specs, g.contributions, strict=True)
    ]
    fed = {a for a, c in pairs if c is not None}
    read = {a for a, c in pairs if c is None}
    assert fed and read
    observed = {a: Observation(1, T) for a in fed | read}
    assert _late_updates(groups, observed) == 0
    observed.update({a: Observation(None, 0) for a in read})
    assert _late_updates(groups, observed) == 0
    observed[next(iter(fed))] = Observation(None, 0)
    assert _late_updates(groups, observed) == 1
