"""Refunds of orders a payout already paid the merchant for.

A payout settles the merchant's balance up to its time: every order placed
before it is paid out. A refund of such an order comes out of the
platform's pocket, whoever asked for it, so rules read whether a refund is
one (`paid_out_at_ms` on the refund). Which payout and which order time
that is depends on the merchant's earlier events, so the store keeps a
book of each merchant's order times and payout times (stream.store.payouts)
and the pipeline asks it for every batch, in event order, before the
aggregates are applied: orders and payouts are written, refunds answered.

An answer depends only on events at or before the refund and within
`RETAIN_MS` of it: retrying a batch, or a backtest cutting batches
elsewhere, gives the same answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from detectors.aggregates import AggregateSpec
from detectors.events import Event, Order, Payout, Refund
from detectors.rules import Rule

__all__ = [
    "DERIVED_FIELDS",
    "RETAIN_MS",
    "EntryKind",
    "LedgerEntry",
    "PaidOutAnswer",
    "ledger_entry",
    "needs_paid_out",
    "with_paid_out",
]

DAY_MS = 86_400_000
# How long order and payout times are remembered: the longest refund window
# a marketplace grants (30 days), with slack. A refund of an older order is
# not judged paid out.
RETAIN_MS = 35 * DAY_MS
DERIVED_FIELDS = frozenset({"order_placed_at_ms", "order_age_ms", "paid_out_at_ms"})


class EntryKind(IntEnum):
    """As the store's script numbers them."""

    ORDER = 1
    PAYOUT = 2
    REFUND = 3


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    kind: EntryKind
    merchant_id: str
    ref: str  # the order id (orders, refunds) or the payout id
    at_ms: int


@dataclass(frozen=True, slots=True)
class PaidOutAnswer:
    """What the book knew when a refund came: when its order was placed and
    the latest payout at or before the refund (None: unknown, or older than
    RETAIN_MS before the refund)."""

    order_at_ms: int | None
    payout_at_ms: int | None

    @property
    def paid_out(self) -> bool:
        return (
            self.order_at_ms is not None
            and self.payout_at_ms is not None
            and self.order_at_ms < self.payout_at_ms
        )


def ledger_entry(e: Event) -> LedgerEntry | None:
    """The book's entry for an event (None: a voucher redemption)."""
    if isinstance(e, Order):
        return LedgerEntry(EntryKind.ORDER, e.merchant_id, e.order_id, e.occurred_at_ms)
    if isinstance(e, Payout):
        return LedgerEntry(EntryKind.PAYOUT, e.merchant_id, e.payout_id, e.occurred_at_ms)
    if isinstance(e, Refund):
        return LedgerEntry(EntryKind.REFUND, e.merchant_id, e.order_id, e.occurred_at_ms)
    return None


def with_paid_out(refund: Refund, answer: PaidOutAnswer) -> Refund:
    placed = answer.order_at_ms
    return dataclasses.replace(
        refund,
        order_placed_at_ms=placed,
        order_age_ms=None if placed is None else max(refund.occurred_at_ms - placed, 0),
        paid_out_at_ms=answer.payout_at_ms if answer.paid_out else None,
    )


def needs_paid_out(rules: Sequence[Rule], extra: Iterable[AggregateSpec] = ()) -> bool:
    """Whether any rule, any aggregate it reads, or any `extra` aggregate
    (merchant health's) has a condition on a derived field: only then does
    a batch pay the book's round trip."""
    specs = [*(a for rule in rules for a in rule.aggregates()), *extra]
    conditions = [*(c for rule in rules for c in rule.where), *(c for a in specs for c in a.where)]
    return any(c.field in DERIVED_FIELDS for c in conditions)
