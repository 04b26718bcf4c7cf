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

Subsidy concentration is the share of a merchant's subsidised voucher
redemptions that came from buyers who had already redeemed one there in
the window: 1 - distinct buyers / subsidised redemptions, a count and a
distinct count the aggregates keep anyway. A hundred redemptions by a
hundred neighbours is 0; by five accounts farming the subsidy, 0.95. A
ranking of the top buyers would say the same at the cost of a per-buyer
sorted set per merchant.

Rates the input contract cannot measure are not fed, and a rate not fed is
left out of the snapshot (detectors.health_score skips it): no component
claims a value nobody counted. The contract has no cancellation event, so
`cancellation_rate` waits for one.

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
_SUBSIDISED = (Condition("subsidy_minor", Op.GT, 0),)
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
    # Taken off the numerator when set: repeats are a count less its distinct values.
    less: AggregateSpec | None = None

    def numerator_of(self, observed: Mapping[str, Observation]) -> int | None:
        num = observed.get(self.numerator.agg_id)
        if num is None or num.value is None:
            return None
        if self.less is None:
            return num.value
        less = observed.get(self.less.agg_id)
        if less is None or less.value is None:
            return None
        # A distinct count's window is exact, a count's whole buckets: the
        # two may disagree by a bucket's edge, never below nothing.
        return max(0, num.value - less.value)


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
            if r.less is not None:
                seen.setdefault(r.less.agg_id, r.less)
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
            num, den = r.numerator_of(observed), observed.get(r.denominator.agg_id)
            if num is None or den is None or den.value is None:
                return None
            rates[r.kind] = RateCounts(num, den.value)
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


def _subsidy_concentration(window_ms: int) -> RateSpecs:
    subsidised = _count(Topic.VOUCHER_REDEMPTIONS, window_ms, _SUBSIDISED)
    buyers = AggregateSpec(
        AggregateKind.DISTINCT,
        frozenset({Topic.VOUCHER_REDEMPTIONS}),
        _MERCHANT,
        field="user_id",
        window_ms=window_ms,
        bucket_ms=default_bucket_ms(window_ms),
        where=_SUBSIDISED,
    )
    return RateSpecs(RateKind.SUBSIDY_CONCENTRATION, subsidised, subsidised, less=buyers)


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
        elif rate.kind is RateKind.SUBSIDY_CONCENTRATION:
            rates.append(_subsidy_concentration(rate.window_ms))
        elif rate.kind is RateKind.ALERT_RATE:
            alert_orders = (rate.window_ms, orders)
    volume = _count(Topic.ORDERS, model.volume_window_ms)
    return HealthAggregates(volume, tuple(rates), alert_orders)
