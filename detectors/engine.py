"""The pure decision engine: which aggregates an event feeds or needs, and
what the rules decide once the store has answered.

No I/O and no clock here: the store's answers and the current time come in
as arguments, so the live worker and the backtest run exactly this code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.contract import format_rfc3339_ms
from detectors.decisions import ALERT_ID_PLACEHOLDER, Alert, AlertCandidate
from detectors.durations import format_duration_ms
from detectors.events import Event, Topic
from detectors.rulebook import Rulebook
from detectors.rules import Metric, MetricKind, Rule
from detectors.rules_conditions import Condition
from detectors.rules_entities import EntityType


@dataclass(frozen=True, slots=True)
class AggregateRequest:
    """Apply `contribution` (None: read only) to an aggregate of one entity."""

    spec: AggregateSpec
    entity_ids: tuple[str, ...]
    contribution: int | str | None


@dataclass(frozen=True, slots=True)
class Observation:
    """The store's answer for one request. `value` None means the event was
    too late for the retained state (not counted, not judged)."""

    value: int | None
    window_end_ms: int  # exclusive end of the window the value covers (first_seen: unused)


class Plan:
    """Precomputed per topic: which aggregates consume it and which rules judge
    it (and so which aggregates they read). `requests` runs for every event,
    so everything that depends only on the topic is settled here, once: the
    per-event path walks flat tuples and never hashes a spec or an entity."""

    def __init__(self, rulebook: Rulebook) -> None:
        self.rulebook = rulebook
        aggs = rulebook.aggregates()
        self.feeds: dict[Topic, tuple[AggregateSpec, ...]] = {
            t: tuple(a for a in aggs if t in a.topics) for t in Topic
        }
        self.judges: dict[Topic, tuple[Rule, ...]] = {
            t: tuple(r for r in rulebook.rules if t in r.topics) for t in Topic
        }
        # Per topic: (trigger conditions, aggregates those rules read), merged
        # for rules with the same conditions.
        self.reads: dict[Topic, tuple[tuple[tuple[Condition, ...], tuple[AggregateSpec, ...]], ...]]
        self.reads = {}
        for topic, rules in self.judges.items():
            by_where: dict[tuple[Condition, ...], dict[str, AggregateSpec]] = {}
            for rule in rules:
                specs = by_where.setdefault(rule.where, {})
                for spec in rule.aggregates():
                    specs.setdefault(spec.agg_id, spec)
            self.reads[topic] = tuple((w, tuple(s.values())) for w, s in by_where.items())
        self._compiled = {t: _TopicPlan(t, self.feeds[t], self.reads[t]) for t in Topic}

    def requests(self, topic: Topic, event: Event) -> list[AggregateRequest]:
        """Every aggregate the event feeds, plus every one its rules read."""
        return self._compiled[topic].requests(event)


# A fed aggregate: (spec, entity slot, constant contribution or None to ask the spec).
_Feeder = tuple[AggregateSpec, int, int | None]
# Aggregates read when the conditions hold: (conditions, ((spec, entity slot), ...)).
_Reader = tuple[tuple[Condition, ...], tuple[tuple[AggregateSpec, int], ...]]


class _TopicPlan:
    """One topic's share of a Plan, flattened for the per-event path. Entities
    are numbered so an event's ids are looked up once per entity, by index."""

    def __init__(
        self,
        topic: Topic,
        feeds: tuple[AggregateSpec, ...],
        reads: tuple[tuple[tuple[Condition, ...], tuple[AggregateSpec, ...]], ...],
    ) -> None:
        self.topic = topic
        # One representative spec per entity: its entity_ids() serves every
        # spec keyed on that entity.
        by_entity: dict[tuple[EntityType, ...], AggregateSpec] = {}
        for spec in (*feeds, *(s for _, specs in reads for s in specs)):
            by_entity.setdefault(spec.entity, spec)
        slot = {entity: i for i, entity in enumerate(by_entity)}
        self.entities: tuple[AggregateSpec, ...] = tuple(by_entity.values())
        self.feeders: tuple[_Feeder, ...] = tuple(
            (s, slot[s.entity], _constant_contribution(s)) for s in feeds
        )
        self.readers: tuple[_Reader, ...] = tuple(
            (where, tuple((s, slot[s.entity]) for s in specs)) for where, specs in reads
        )

    def requests(self, event: Event) -> list[AggregateRequest]:
        # Every entity of the topic's aggregates, looked up once (None: the
        # event lacks it). Nearly every event needs them all anyway.
        ids_of = [spec.entity_ids(event) for spec in self.entities]
        out: dict[str, AggregateRequest] = {}  # by agg_id: a spec's ids follow from the event
        topic = self.topic
        for spec, slot, constant in self.feeders:
            contribution = spec.contribution(topic, event) if constant is None else constant
            ids = ids_of[slot]
            if contribution is not None and ids is not None:
                out[spec.agg_id] = AggregateRequest(spec, ids, contribution)
        for where, specs in self.readers:
            if where and not all(c.matches(event) for c in where):
                continue
            for spec, slot in specs:
                ids = ids_of[slot]
                if ids is not None and spec.agg_id not in out:
                    out[spec.agg_id] = AggregateRequest(spec, ids, None)
        return list(out.values())


def _constant_contribution(spec: AggregateSpec) -> int | None:
    """1 for a count or a sighting without conditions: what `contribution`
    returns for every event of a topic the spec is fed by, without the call.
    Anything else (conditions, values read from the event) asks the spec."""
    if not spec.where and spec.kind in (AggregateKind.COUNT, AggregateKind.FIRST_SEEN):
        return 1
    return None


def evaluate(
    rule: Rule,
    topic: Topic,
    trigger_topic: str,
    event: Event,
    observed: Mapping[str, Observation],
    now_ms: int,
) -> AlertCandidate | None:
    """Judge one event by one rule. `observed` maps agg_id → Observation for
    this event's entities. Returns None when the rule does not fire."""
    if topic not in rule.topics or not all(c.matches(event) for c in rule.where):
        return None
    entity_ids = tuple(rule.metric.aggregate.entity_ids(event) or ())
    if not entity_ids:
        return None
    main = observed.get(rule.metric.aggregate.agg_id)
    if main is None or main.value is None:
        return None
    evidence: dict[str, object] = {"aggregate": rule.metric.aggregate.kind.value}
    value = _metric_value(rule, event, main, observed, evidence)
    if value is None or not rule.comparison.holds(value, rule.threshold):
        return None
    if not _requirements_hold(rule, event, observed, evidence):
        return None
    return _candidate(rule, trigger_topic, event, entity_ids, main, value, evidence, now_ms)


def _metric_value(
    rule: Rule,
    event: Event,
    main: Observation,
    observed: Mapping[str, Observation],
    evidence: dict[str, object],
) -> float | None:
    metric = rule.metric
    assert main.value is not None
    if metric.kind is MetricKind.AGE:
        if main.value < 0:
            return None
        age = event.occurred_at_ms - main.value
        evidence.update(first_seen_at=format_rfc3339_ms(main.value), age=format_duration_ms(age))
        return float(age)
    if metric.kind is MetricKind.VALUE:
        evidence["value"] = main.value
        if metric.min_volume and main.value < metric.min_volume:
            return None
        return float(main.value)
    assert metric.other is not None
    other = observed.get(metric.other.agg_id)
    if other is None or other.value is None:
        return None
    if metric.kind is MetricKind.BALANCE:
        if main.window_end_ms != other.window_end_ms:
            # A late or redelivered event is counted on the busiest window
            # around it, which later events helped build (a redelivered payout
            # meets the next day's payout in its debits); credits are read at
            # its own time. Balancing two different windows would be
            # nonsense, so the balance is undefined: no decision.
            return None
        evidence.update(credits=main.value, debits=other.value)
        return float(main.value - other.value)
    if metric.kind is MetricKind.SURGE:
        return _surge(metric, main.value, other.value, _history_ms(rule, event, observed), evidence)
    if other.value <= 0 or other.value < metric.min_volume:
        return None
    evidence.update(numerator=main.value, denominator=other.value, min_volume=metric.min_volume)
    return main.value / other.value


def _history_ms(rule: Rule, event: Event, observed: Mapping[str, Observation]) -> int | None:
    """How long the metric's entity has existed, when the rule requires an age
    of that same entity (so its first sighting was read), else None."""
    for req in rule.requires:
        if req.first_seen.entity == rule.metric.aggregate.entity:
            seen = observed.get(req.first_seen.agg_id)
            if seen is not None and seen.value is not None and seen.value >= 0:
                return event.occurred_at_ms - seen.value
    return None


def _surge(
    metric: Metric,
    recent: int,
    baseline: int,
    history_ms: int | None,
    evidence: dict[str, object],
) -> float | None:
    """Rate in the recent window over the rate in the rest of the baseline window.

    The baseline excludes the recent window, so a surge does not dilute its
    own baseline, and it covers only the time the entity has existed (when
    the rule reads its age): a 2-day-old campaign's history is 2 days, not
    a week of zeros that would inflate every peak 3.5-fold. Without any
    earlier activity there is no baseline to compare with: the metric is
    undefined (a rule on young entities covers that case), not infinite."""
    assert metric.other is not None
    recent_ms = metric.aggregate.window_ms or 0
    baseline_ms = metric.other.window_ms or 0
    if history_ms is not None:
        baseline_ms = min(baseline_ms, history_ms)
    earlier = baseline - recent
    if recent < metric.min_volume or earlier <= 0 or baseline_ms <= recent_ms:
        return None
    earlier_rate = earlier / (baseline_ms - recent_ms)
    value = (recent / recent_ms) / earlier_rate
    evidence.update(
        recent=recent,
        recent_window=format_duration_ms(recent_ms),
        baseline_window=format_duration_ms(metric.other.window_ms or 0),
        history_used=format_duration_ms(baseline_ms),
        baseline_per_recent_window=round(earlier_rate * recent_ms, 3),
        min_volume=metric.min_volume,
    )
    return value


def _requirements_hold(
    rule: Rule, event: Event, observed: Mapping[str, Observation], evidence: dict[str, object]
) -> bool:
    for req in rule.requires:
        seen = observed.get(req.first_seen.agg_id)
        if seen is None or seen.value is None or seen.value < 0:
            return False
        age = event.occurred_at_ms - seen.value
        if not req.comparison.holds(age, req.age_ms):
            return False
        name = "+".join(e.value for e in req.first_seen.entity)
        evidence[f"{name}_age"] = format_duration_ms(max(age, 0))
    return True


def _candidate(
    rule: Rule,
    trigger_topic: str,
    event: Event,
    entity_ids: tuple[str, ...],
    main: Observation,
    value: float,
    evidence: dict[str, object],
    now_ms: int,
) -> AlertCandidate:
    window_ms = rule.window_ms
    if rule.metric.is_age:
        # The "window" of an age rule is the span from first sighting to now.
        assert main.value is not None
        start, end = min(main.value, event.occurred_at_ms), event.occurred_at_ms
        window_ms = end - start
    else:
        end = main.window_end_ms
        start = end - window_ms
    if len(entity_ids) > 1:
        evidence["key"] = dict(zip((e.value for e in rule.entity), entity_ids, strict=True))
    if rule.where:
        evidence["conditions"] = [c.describe() for c in rule.where]
    alert = Alert(
        # Placeholder: the store numbers incidents and fixes the id (see
        # decisions.incident_alert_id), so it does not depend on which event
        # or which interleaving tipped the incident.
        alert_id=ALERT_ID_PLACEHOLDER,
        rule_id=rule.rule_id,
        rule_version=rule.version,
        severity=rule.severity,
        entity_type=rule.entity[0],
        entity_id=entity_ids[0],
        window_ms=window_ms,
        window_start_ms=start,
        observed=round(value, 6) if rule.metric.is_fractional else int(value),
        threshold=rule.threshold,
        trigger_event_id=event.event_id,
        trigger_topic=trigger_topic,
        occurred_at_ms=event.occurred_at_ms,
        detected_at_ms=now_ms,
        mode=rule.mode,
        evidence=evidence,
        margin=rule.comparison.margin(value, rule.threshold),
    )
    return AlertCandidate(alert, entity_ids, start, end, rule.cooldown_ms)
