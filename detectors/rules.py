"""Rule specifications: detection policy as data (loaded from YAML by
`detectors.rulebook`). A spec is a frozen value; `detectors.engine` evaluates
it, with the arithmetic of each metric kind in `detectors.metric_kinds`.
Specs carry id and version so every decision names the policy behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from detectors.aggregates import AggregateSpec, Observation
from detectors.counted import ReportFloor
from detectors.durations import format_duration_ms
from detectors.events import Event, Topic
from detectors.money import PerCurrency
from detectors.rules_conditions import Condition
from detectors.rules_entities import EntityType
from detectors.rules_lists import ListCondition

if TYPE_CHECKING:
    from detectors.rule_syntax import Parser

__all__ = [
    "BENEFIT_SCOPES",
    "FUND_SCOPES",
    "Action",
    "ActionKind",
    "AgeRequirement",
    "Comparison",
    "CountRequirement",
    "EntityType",
    "Evaluator",
    "Evidence",
    "Guardrail",
    "Metric",
    "MetricKind",
    "Mode",
    "Observed",
    "Requirement",
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


# The store's answers for one event, by agg_id.
Observed = Mapping[str, Observation]
# What explains an alert's value, published with it.
Evidence = dict[str, object]


class MetricKind(StrEnum):
    """The shipped metric kinds: how a rule's observed value is made from the
    aggregates it reads. Each has an Evaluator in detectors.metric_kinds."""

    VALUE = "value"  # one count, sum or distinct count
    RATIO = "ratio"  # aggregate / other, over the same window
    AGE = "age"  # event time minus the entity's first sighting
    BALANCE = "balance"  # aggregate (credits) minus other (debits), same window
    SURGE = "surge"  # rate over a recent window / rate over the rest of a baseline window


@dataclass(frozen=True, slots=True)
class Metric:
    """What a rule compares: the value its kind's evaluator makes from the
    aggregates it reads. `aggregate` is the main one (its entity is the
    alert's, its window the alert's, and without it nothing is judged);
    `others` are the rest (a ratio's denominator, a balance's debits, a
    surge's baseline window)."""

    evaluator: Evaluator
    aggregate: AggregateSpec
    others: tuple[AggregateSpec, ...] = ()
    # A floor the kind applies (a ratio's denominator, a surge's recent
    # value, a value itself must reach it). Per currency when that is money.
    min_volume: int | PerCurrency = 0

    @property
    def kind(self) -> str:
        return self.evaluator.kind

    @property
    def other(self) -> AggregateSpec | None:
        """The second operand of a two-aggregate kind."""
        return self.others[0] if self.others else None

    def aggregates(self) -> tuple[AggregateSpec, ...]:
        return (self.aggregate, *self.others)

    @property
    def speaks_money(self) -> bool:
        return any(a.per_currency for a in self.aggregates())


class Evaluator(Protocol):
    """One metric kind, whole: how a rule file writes it, which aggregates it
    reads, how its limits are checked and how its value is made from the
    store's answers. Shipped kinds are registered in
    `detectors.metric_kinds.REGISTRY`, which says how to add one."""

    @property
    def kind(self) -> str:
        """The kind's name: a MetricKind for the shipped kinds."""
        ...

    @property
    def keywords(self) -> Mapping[str, frozenset[str]]:
        """The `kind:` names a rule file's metric section uses for this kind,
        each with the keys that section may hold (any other is a mistake)."""
        ...

    @property
    def fractional(self) -> bool:
        """Values are fractions (alerts round them to 6 places), not integers."""
        ...

    def parse(
        self, p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str
    ) -> Metric:
        """The metric a rule file's section describes, with every aggregate
        the kind reads (the plan asks the store for exactly those);
        mistakes are recorded with `p.fail`."""
        ...

    def threshold(
        self, p: Parser, raw: Any, metric: Metric, comparison: Comparison, path: str
    ) -> float | PerCurrency:
        """The rule's `threshold`, checked for this kind (money is per currency)."""
        ...

    def volume(self, p: Parser, raw: Any, metric: Metric, path: str) -> int | PerCurrency:
        """The rule's `min_volume`, or a recorded mistake when the kind has none."""
        ...

    def value(
        self,
        rule: Rule,
        event: Event,
        main: Observation,
        observed: Observed,
        min_volume: int,
        evidence: Evidence,
    ) -> float | None:
        """The metric's value for `event`, None when it is undefined (too
        little volume, a missing or late answer). `main` is the answer for
        `rule.metric.aggregate`, present and not late; `observed` holds
        every answer by agg_id. Adds what explains the value to `evidence`."""
        ...

    def span(self, metric: Metric, main: Observation, event: Event) -> tuple[int, int]:
        """The [start, end) the alert reports as the window the value covers."""
        ...

    def report_floor(self, rule: Rule) -> ReportFloor | None:
        """The main aggregate's value below which `rule` cannot fire, so its
        counted events need not be read (detectors.counted); None: never
        read them (the main aggregate counts no events, or the rule fires
        on low values)."""
        ...


@dataclass(frozen=True, slots=True)
class AgeRequirement:
    """Only fire while an entity is younger (`<`) or older (`>=`) than an age,
    e.g. merchants first seen less than 30 days ago."""

    first_seen: AggregateSpec
    comparison: Comparison
    age_ms: int

    @property
    def aggregate(self) -> AggregateSpec:
        return self.first_seen


@dataclass(frozen=True, slots=True)
class CountRequirement:
    """Only fire while a count or distinct count of the rule's entity holds,
    e.g. at least 2 accounts redeeming on the device: evidence the metric
    alone does not carry. Many merchants from one device is a deal hunter
    touring a city; from several new accounts on that device, a device
    harvesting vouchers for them. A freeze should rest on the second."""

    aggregate: AggregateSpec
    comparison: Comparison
    value: int

    @property
    def label(self) -> str:
        """The name its value has in an alert's evidence, e.g. `distinct_user_id_24h`."""
        spec = self.aggregate
        what = spec.field or "events"
        return f"{spec.kind.value}_{what}_{format_duration_ms(spec.window_ms or 0)}"


# A rule's extra conditions on other aggregates of the event's entities.
Requirement = AgeRequirement | CountRequirement


@dataclass(frozen=True, slots=True)
class Guardrail:
    """How much a rule may freeze before it is demoted to shadow.
    `freeze_budget_10m`: distinct entities frozen per 10 minutes of event
    time; None: the default, max(5, 3 x the rule's trailing 7-day p99)."""

    freeze_budget_10m: int | None = None


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
    requires: tuple[Requirement, ...] = ()
    # Control lists the rule's entity must be on (`where: {list: watch}`):
    # they gate the decision, never what the aggregates count.
    lists: tuple[ListCondition, ...] = ()
    # Health bands (detectors.health_model.Band values) the event's merchant
    # must have been in (`requires: [{health_band: critical}]`): they gate
    # the decision as lists do, read as detectors.health_bands says.
    health_bands: frozenset[str] = frozenset()
    guardrail: Guardrail = Guardrail()

    def aggregates(self) -> tuple[AggregateSpec, ...]:
        return self.metric.aggregates() + tuple(r.aggregate for r in self.requires)

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
