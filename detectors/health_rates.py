"""Which windowed aggregates feed the merchant-health rates, and how the
store's answers become a scorer's inputs.

The rates are plain per-merchant counts over event-time windows, so they
are kept by the same aggregates the rules use: the plan asks for them in
the batch's one store call (an order or a refund feeds its count, and
every event of the merchant reads them), and no second counting path,
key layout or round trip exists for them. A rule counting the very same
thing (same topics, window, resolution and conditions) shares the state,
as two rules do.

Refunds after payout count what the refund rules count: refunds the
pipeline marked as of a paid-out order (detectors.paid_out) that were 2+
days old, the age past which an honest complaint no longer comes; ordinary
next-morning refunds of paid-out orders would otherwise tax every busy
merchant.

Rates the input contract cannot measure yet are not fed, and a rate not
fed is left out of the snapshot (detectors.health_score skips it): no
component claims a value nobody counted.
- subsidy concentration: "top buyers' share" needs a per-buyer ranking the
  aggregates do not keep;
- cancellations: the contract has no cancellation event;

The alert rate's numerator is no aggregate either: alerts are outputs, known
only after the store call that reads the rates, so the health ledger keeps
each alert naming a merchant (stream.store.health_ledger); its denominator
is an order count like the others'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from detectors.aggregates import AggregateKind, AggregateSpec, Observation
from detectors.events import RefundInitiator, Topic
from detectors.health_model import HealthModel, RateKind
from detectors.health_score import RateCounts
from detectors.rules_conditions import Condition, Op
from detectors.rules_entities import EntityType
from detectors.windows import default_bucket_ms

__all__ = ["HEALTH_TOPICS", "HealthAggregates", "RateSpecs", "alerts_within", "health_aggregates"]

# The events a snapshot may be computed at: every event names its merchant,
# and a freeze is scored at its trigger, which may be a payout or a redemption.
HEALTH_TOPICS = frozenset(Topic)
_MERCHANT = (EntityType.MERCHANT,)
_BY_MERCHANT = (Condition("initiated_by", Op.EQ, RefundInitiator.MERCHANT.value),)
LATE_REFUND_AGE_MS = 2 * 86_400_000
_LATE_PAID_OUT = (
    Condition("paid_out_at_ms", Op.EXISTS),
    Condition("order_age_ms", Op.GE, LATE_REFUND_AGE_MS),
)


def _count(topic: Topic, window_ms: int, where: tuple[Condition, ...] = ()) -> AggregateSpec:
    return AggregateSpec(
        AggregateKind.COUNT,
        frozenset({topic}),
        _MERCHANT,
        window_ms=window_ms,
        bucket_ms=default_bucket_ms(window_ms),
        where=where,
    )


@dataclass(frozen=True, slots=True)
class RateSpecs:
    kind: RateKind
    numerator: AggregateSpec
    denominator: AggregateSpec


@dataclass(frozen=True, slots=True)
class HealthAggregates:
    """The aggregates of one health model."""

    orders: AggregateSpec  # the volume gate: orders in the model's volume window
    rates: tuple[RateSpecs, ...]
    # The alert rate's window and its denominator (orders in that window);
    # its numerator, the merchant's alerts, is kept in the health ledger.
    alert_orders: tuple[int, AggregateSpec] | None = None

    def specs(self) -> tuple[AggregateSpec, ...]:
        """Every aggregate, each once (rates share their order counts)."""
        seen: dict[str, AggregateSpec] = {self.orders.agg_id: self.orders}
        if self.alert_orders is not None:
            seen.setdefault(self.alert_orders[1].agg_id, self.alert_orders[1])
        for r in self.rates:
            seen.setdefault(r.numerator.agg_id, r.numerator)
            seen.setdefault(r.denominator.agg_id, r.denominator)
        return tuple(seen.values())

    def reads(self) -> dict[Topic, tuple[AggregateSpec, ...]]:
        """What each event that moves a rate reads (and feeds, by its topics)."""
        specs = self.specs()
        return {t: specs for t in HEALTH_TOPICS}

    def counts(
        self, observed: Mapping[str, Observation]
    ) -> tuple[int, dict[RateKind, RateCounts]] | None:
        """Orders in the volume window and each rate's counts, from one
        event's observations; None when any is missing or was too late for
        its window (no snapshot is computed at that event)."""
        orders = observed.get(self.orders.agg_id)
        if orders is None or orders.value is None:
            return None
        rates: dict[RateKind, RateCounts] = {}
        for r in self.rates:
            num, den = observed.get(r.numerator.agg_id), observed.get(r.denominator.agg_id)
            if num is None or den is None or num.value is None or den.value is None:
                return None
            rates[r.kind] = RateCounts(num.value, den.value)
        return orders.value, rates

    def alert_denominator(self, observed: Mapping[str, Observation]) -> int | None:
        """Orders in the alert rate's window (None: no alert rate, or too late)."""
        if self.alert_orders is None:
            return None
        found = observed.get(self.alert_orders[1].agg_id)
        return None if found is None else found.value


def alerts_within(alerts_ms: Iterable[int], as_of_ms: int, window_ms: int) -> int:
    """The alerts of an event-time window ending at `as_of_ms` (inclusive)."""
    return sum(1 for t in alerts_ms if as_of_ms - window_ms < t <= as_of_ms)


def health_aggregates(model: HealthModel) -> HealthAggregates:
    """The aggregates the model's measurable rates need (see the module doc)."""
    rates = []
    alert_orders = None
    for rate in model.rates:
        orders = _count(Topic.ORDERS, rate.window_ms)
        if rate.kind is RateKind.REFUND_RATE:
            rates.append(RateSpecs(rate.kind, _count(Topic.REFUNDS, rate.window_ms), orders))
        elif rate.kind is RateKind.MERCHANT_REFUND_RATE:
            refunds = _count(Topic.REFUNDS, rate.window_ms, _BY_MERCHANT)
            rates.append(RateSpecs(rate.kind, refunds, orders))
        elif rate.kind is RateKind.REFUNDS_AFTER_PAYOUT:
            late = _count(Topic.REFUNDS, rate.window_ms, _LATE_PAID_OUT)
            rates.append(RateSpecs(rate.kind, late, orders))
        elif rate.kind is RateKind.ALERT_RATE:
            alert_orders = (rate.window_ms, orders)
    volume = _count(Topic.ORDERS, model.volume_window_ms)
    return HealthAggregates(volume, tuple(rates), alert_orders)
