"""Refunds of paid-out orders: the marks a refund gets, and which rule sets
make a batch consult the payout book."""

from __future__ import annotations

from detectors.events import Order, Payout, Refund, Topic, VoucherRedemption
from detectors.paid_out import (
    EntryKind,
    PaidOutAnswer,
    ledger_entry,
    needs_paid_out,
    with_paid_out,
)
from detectors.rulebook import parse_rulebook

T = 1_790_000_000_000
REFUND = Refund("e3", T + 50 * 3_600_000, "rf1", "o1", "u1", "m1", 1500, "EUR")


def test_a_refund_is_marked_with_its_order_age_and_the_payout_that_covered_it() -> None:
    marked = with_paid_out(REFUND, PaidOutAnswer(T, T + 3_600_000))
    assert marked.order_placed_at_ms == T and marked.order_age_ms == 50 * 3_600_000
    assert marked.paid_out_at_ms == T + 3_600_000
    before = with_paid_out(REFUND, PaidOutAnswer(T, T - 1))  # the payout preceded the order
    assert before.paid_out_at_ms is None and before.order_age_ms == 50 * 3_600_000
    unknown = with_paid_out(REFUND, PaidOutAnswer(None, T))
    assert (unknown.order_placed_at_ms, unknown.order_age_ms, unknown.paid_out_at_ms) == (
        None,
        None,
        None,
    )


def test_the_book_hears_of_orders_payouts_and_refunds_only() -> None:
    events = [
        Order("e1", T, "o1", "u1", "m1", 1500, "EUR"),
        VoucherRedemption("e2", T, "r1", "v1", "u1", "m1", 800, 400, "EUR"),
        Payout("e4", T + 1, "p1", "m1", 1500, "EUR", "iban"),
        REFUND,
    ]
    entries = [ledger_entry(e) for e in events]
    kinds = [(e.kind, e.ref) for e in entries if e is not None]
    assert kinds == [(EntryKind.ORDER, "o1"), (EntryKind.PAYOUT, "p1"), (EntryKind.REFUND, "o1")]


def rules(where: str) -> str:
    return f"""
rules:
  - id: r1
    version: 1
    triggers: [refunds]
    entity: merchant
    metric: {{kind: count, topics: [refunds], window: 7d{where}}}
    compare: ">="
    threshold: 3
    severity: high
"""


def test_only_rule_sets_reading_the_marks_pay_for_the_book() -> None:
    assert not needs_paid_out(parse_rulebook(rules("")).rules)
    marked = rules(", where: [{field: paid_out_at_ms, op: exists}]")
    assert needs_paid_out(parse_rulebook(marked).rules)
    aged = rules(", where: [{field: order_age_ms, op: '>=', value: 2d}]")
    (rule,) = parse_rulebook(aged).rules
    assert needs_paid_out([rule])
    assert rule.metric.aggregate.where[0].value == 2 * 86_400_000
    assert Topic.REFUNDS in rule.topics
