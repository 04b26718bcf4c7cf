"""Rule specifications: detection policy as data (loaded from YAML by
`detectors.rulebook`). A spec is a frozen value; `detectors.engine` evaluates
it. Specs carry id and version so every decision names the policy behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from detectors.aggregates import AggregateSpec
from detectors.events import Topic
from detectors.money import PerCurrency
from detectors.rules_conditions import Condition
from detectors.rules_entities import EntityType

__all__ = [
    "Action",
    "ActionKind",
    "AgeRequirement",
    "Comparison",
    "EntityType",
    "Metric",
    "MetricKind",
    "Mode",
    "Rule",
    "Severity",
]


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


class Mode(StrEnum):
    """`shadow` rules are evaluated and alert (marked shadow) but never freeze."""

    ENFORCE = "enforce"
    SHADOW = "shadow"


class Comparison(StrEnum):
    GE = ">="
    GT = ">"
    LE = "<="
    LT = "<"

    def holds(self, observed: float, threshold: float) -> bool:
        if self is Comparison.GE:
            return observed >= threshold
        if self is Comparison.GT:
            return observed > threshold
        if self is Comparison.LE:
            return observed <= threshold
        return observed < threshold

    def margin(self, observed: float, threshold: float) -> float:
        """How far past the threshold, positive when the rule fires."""
        return (
            observed - threshold if self in (Comparison.GE, Comparison.GT) else threshold - observed
        )


class ActionKind(StrEnum):
    ALERT = "alert"
    BENEFIT_FREEZE = "benefit_freeze"
    FUND_FREEZE = "fund_freeze"


BENEFIT_SCOPES = ("vouchers", "subsidies", "all_benefits")  # narrow → broad
FUND_SCOPES = ("payout", "payouts")  # `payout` = just the triggering payout


@dataclass(frozen=True, slots=True)
class Action:
    kind: ActionKind = ActionKind.ALERT
    scope: str | None = None
    duration_ms: int | None = None


class MetricKind(StrEnum):
    """How a rule's observed value is made from the aggregates it reads."""

    VALUE = "value"  # one count, sum or distinct count
    RATIO = "ratio"  # aggregate / other, over the same window
    AGE = "age"  # event time minus the entity's first sighting
    BALANCE = "balance"  # aggregate (credits) minus other (debits), same window
    SURGE = "surge"  # rate over a recent window / rate over the rest of a baseline window


@dataclass(frozen=True, slots=True)
class Metric:
    """What a rule compares. `other` is the ratio's denominator, the balance's
    debits or the surge's baseline window."""

    aggregate: AggregateSpec
    other: AggregateSpec | None = None
    # Ratio: the denominator must reach this; surge: the recent value; value:
    # itself. Per currency when that is money (see `money_volume`).
    min_volume: int | PerCurrency = 0
    kind: MetricKind = MetricKind.VALUE

    @property
    def is_age(self) -> bool:
        return self.kind is MetricKind.AGE

    @property
    def is_fractional(self) -> bool:
        """Ratio and surge values are fractions; the others are integers."""
        return self.kind in (MetricKind.RATIO, MetricKind.SURGE)

    def aggregates(self) -> tuple[AggregateSpec, ...]:
        return (self.aggregate,) if self.other is None else (self.aggregate, self.other)

    @property
    def money_threshold(self) -> bool:
        """The threshold is an amount of money, so it is given per currency: a
        sum, a balance of sums, or a ratio with money on one side only (money
        over money is a plain fraction, like count over count)."""
        money = self.aggregate.per_currency
        if self.kind is MetricKind.RATIO:
            assert self.other is not None
            return money != self.other.per_currency
        return money and self.kind in (MetricKind.VALUE, MetricKind.BALANCE)

    @property
    def money_volume(self) -> bool:
        """`min_volume` is an amount of money (a sum's own value, a surge's
        recent sum, a ratio's money denominator)."""
        if self.kind is MetricKind.RATIO:
            assert self.other is not None
            return self.other.per_currency
        return self.aggregate.per_currency and self.kind in (MetricKind.VALUE, MetricKind.SURGE)

    @property
    def speaks_money(self) -> bool:
        return any(a.per_currency for a in self.aggregates())


@dataclass(frozen=True, slots=True)
class AgeRequirement:
    """Only fire while an entity is younger (`<`) or older (`>=`) than an age,
    e.g. merchants first seen less than 30 days ago."""

    first_seen: AggregateSpec
    comparison: Comparison
    age_ms: int


@dataclass(frozen=True, slots=True)
class Rule:
    rule_id: str
    version: int
    description: str
    topics: frozenset[Topic]  # events of these topics are judged by the rule
    entity: tuple[EntityType, ...]
    metric: Metric
    comparison: Comparison
    threshold: float | PerCurrency  # per currency when the metric's threshold is money
    severity: Severity
    mode: Mode
    action: Action
    cooldown_ms: int
    where: tuple[Condition, ...] = ()
    requires: tuple[AgeRequirement, ...] = ()

    def aggregates(self) -> tuple[AggregateSpec, ...]:
        return self.metric.aggregates() + tuple(r.first_seen for r in self.requires)

    @property
    def window_ms(self) -> int:
        return self.metric.aggregate.window_ms or 0

    def limits(self, currency: str) -> tuple[float, int] | None:
        """(threshold, min_volume) for an event in `currency`; None when a
        money limit does not name that currency: the rule ignores the event."""
        threshold, volume = self.threshold, self.metric.min_volume
        if isinstance(threshold, PerCurrency):
            found = threshold.get(currency)
            if found is None:
                return None
            threshold = found
        if isinstance(volume, PerCurrency):
            amount = volume.get(currency)
            if amount is None:
                return None
            volume = int(amount)
        return threshold, volume

    @property
    def currencies(self) -> tuple[str, ...] | None:
        """The currencies a money rule judges; None: every event, whatever its currency."""
        for limit in (self.threshold, self.metric.min_volume):
            if isinstance(limit, PerCurrency):
                return limit.currencies
        return None
