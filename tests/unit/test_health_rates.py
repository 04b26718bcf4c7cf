"""The merchant-health rates as windowed aggregates (detectors.health_rates):
the rule file's `health` section, the plan that asks for them in the
batch's one store call, and the scorer's inputs from the store's answers."""

from __future__ import annotations

import dataclasses

from detectors.aggregates import Observation
from detectors.engine import Plan
from detectors.events import Order, Payout, Refund, RefundInitiator, Topic, VoucherRedemption
from detectors.health_model import DEFAULT_MODEL, RateKind
from detectors.health_rates import health_aggregates
from detectors.health_score import RateCounts
from detectors.rulebook import parse_rulebook
from stream.active_rules import ActiveRules, RulesSource
from tests.unit.test_rulebook import GOOD_RULE, book, errors

T = 1_800_000_000_000
HEALTH = "health:\n  score_model_version: h-test\n  bands: {healthy: 900, at_risk: 400}\n"


def test_the_health_section_is_parsed_and_versioned_with_the_rules() -> None:
    plain = parse_rulebook(book(GOOD_RULE))
    scored = parse_rulebook(book(GOOD_RULE, HEALTH))
    assert plain.health is None
    assert scored.health is not None and scored.health.score_model_version == "h-test"
    assert (scored.health.healthy_from, scored.health.at_risk_from) == (900, 400)
    assert scored.digest != plain.digest  # the ruleset_version covers the model


def test_a_bad_health_section_is_reported_with_its_key() -> None:
    found = errors(book(GOOD_RULE, "health:\n  score_model_version: h\n  min_orders: -1\n"))
    assert any("health.min_orders" in e for e in found)
    found = errors(book(GOOD_RULE, "health:\n  rates: {refund_rate: {window: 17s}}\n"))
    assert any("health.score_model_version" in e for e in found)
    odd = "health:\n  score_model_version: h\n  rates: {refund_rate: {window: 17s}}\n"
    assert any("health" in e and "bucket" in e for e in errors(book(GOOD_RULE, odd)))


def order(merchant: str = "m-1") -> Order:
    return Order("e-1", T, "o-1", "u-1", merchant, 1000, "EUR")


def refund(by: RefundInitiator) -> Refund:
    return Refund("e-2", T, "rf-1", "o-1", "u-1", "m-1", 500, "EUR", initiated_by=by)


def test_orders_and_refunds_feed_and_read_every_rate_of_their_merchant() -> None:
    rules = ActiveRules.build(parse_rulebook(book(GOOD_RULE, HEALTH)), RulesSource.FILE)
    specs = {s.agg_id for s in health_aggregates(DEFAULT_MODEL).specs()}
    # Orders, refunds, merchant-initiated refunds, late refunds of paid-out
    # orders, subsidised redemptions and their distinct buyers: 30 days each.
    assert len(specs) == 6

    def merchant_request(
        topic: Topic, event: Order | Refund | VoucherRedemption
    ) -> dict[str, int | str | None]:
        (req,) = [r for r in rules.plan.requests(topic, event) if r.entity_ids == ("m-1",)]
        return {s.agg_id: c for s, c in zip(req.group.specs, req.contributions, strict=True)}

    fed = merchant_request(Topic.ORDERS, order())
    assert set(fed) == specs and sorted(fed.values(), key=str) == [1, None, None, None, None, None]
    subsidised = VoucherRedemption("e-4", T, "r-1", "v-1", "u-1", "m-1", 1000, 300, "EUR")
    assert sorted(merchant_request(Topic.VOUCHER_REDEMPTIONS, subsidised).values(), key=str) == [
        1, None, None, None, None, "u-1",
    ]  # fmt: skip
    paid_in_full = dataclasses.replace(subsidised, subsidy_minor=0)
    assert not any(merchant_request(Topic.VOUCHER_REDEMPTIONS, paid_in_full).values())
    by_merchant = merchant_request(Topic.REFUNDS, refund(RefundInitiator.MERCHANT))
    by_user = merchant_request(Topic.REFUNDS, refund(RefundInitiator.USER))
    assert sum(1 for c in by_merchant.values() if c) == 2
    assert sum(1 for c in by_user.values() if c) == 1
    late = dataclasses.replace(
        refund(RefundInitiator.USER), paid_out_at_ms=T - 1, order_age_ms=3 * 86_400_000
    )
    assert sum(1 for c in merchant_request(Topic.REFUNDS, late).values() if c) == 2
    young = dataclasses.replace(late, order_age_ms=86_400_000)  # next morning: not counted
    assert sum(1 for c in merchant_request(Topic.REFUNDS, young).values() if c) == 1
    assert rules.paid_out  # the health rate alone makes batches consult the payout book
    payout = Payout("e-3", T, "p-1", "m-1", 100, "EUR", "bank-1")
    (read,) = rules.plan.requests(Topic.PAYOUTS, payout)  # a freeze may be scored at a payout
    assert {s.agg_id for s in read.group.specs} == specs and set(read.contributions) == {None}


def test_without_a_health_section_nothing_is_asked() -> None:
    rules = ActiveRules.build(parse_rulebook(book(GOOD_RULE)), RulesSource.FILE)
    assert all(r.entity_ids != ("m-1",) for r in rules.plan.requests(Topic.ORDERS, order()))
    assert Plan(parse_rulebook(book(GOOD_RULE))).feeds[Topic.REFUNDS] == ()


def test_counts_come_from_the_observations_or_not_at_all() -> None:
    aggs = health_aggregates(DEFAULT_MODEL)
    refunds = {r.kind: r.numerator.agg_id for r in aggs.rates}
    (subsidy,) = [r for r in aggs.rates if r.kind is RateKind.SUBSIDY_CONCENTRATION]
    assert subsidy.less is not None
    seen = {
        aggs.orders.agg_id: Observation(40, T),
        refunds[RateKind.REFUND_RATE]: Observation(6, T),
        refunds[RateKind.MERCHANT_REFUND_RATE]: Observation(2, T),
        refunds[RateKind.REFUNDS_AFTER_PAYOUT]: Observation(1, T),
        subsidy.numerator.agg_id: Observation(20, T),  # subsidised redemptions
        subsidy.less.agg_id: Observation(5, T),  # by 5 buyers: 15 repeats
    }
    assert aggs.counts(seen) == (
        40,
        {
            RateKind.REFUND_RATE: RateCounts(6, 40),
            RateKind.MERCHANT_REFUND_RATE: RateCounts(2, 40),
            RateKind.REFUNDS_AFTER_PAYOUT: RateCounts(1, 40),
            RateKind.SUBSIDY_CONCENTRATION: RateCounts(15, 20),
        },
    )
    # A bucket's edge can leave the count a buyer short of the distinct count.
    edge = {**seen, subsidy.less.agg_id: Observation(21, T)}
    assert (aggs.counts(edge) or (0, {}))[1][RateKind.SUBSIDY_CONCENTRATION] == RateCounts(0, 20)
    assert aggs.counts({**seen, subsidy.less.agg_id: Observation(None, T)}) is None
    late = {**seen, aggs.orders.agg_id: Observation(None, T)}
    assert aggs.counts(late) is None  # too late for its window: no snapshot at that event
    assert aggs.counts({}) is None
