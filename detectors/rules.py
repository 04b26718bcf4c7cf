"""Rule specifications: detection policy as data (loaded from YAML by
`detectors.rulebook`). A spec is a frozen value; `detectors.engine` evaluates
it. Specs carry id and version so every decision names the policy behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.events import Topic
from detectors.rules_conditions import Condition
from detectors.rules_entities import EntityType

__all__ = [
    "Action",
    "ActionKind",
    "AgeRequirement",
    "Comparison",
    "EntityType",
    "Metric",
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


@dataclass(frozen=True, slots=True)
class Metric:
    """What a rule compares: one aggregate, the ratio of two, or an entity's age."""

    aggregate: AggregateSpec
    denominator: AggregateSpec | None = None  # set for ratios
    min_volume: int = 0  # the ratio's denominator (or the count) must reach this

    @property
    def is_age(self) -> bool:
        return self.aggregate.kind is AggregateKind.FIRST_SEEN

    def aggregates(self) -> tuple[AggregateSpec, ...]:
        return (self.aggregate,) if self.denominator is None else (self.aggregate, self.denominator)


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
    threshold: float
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
