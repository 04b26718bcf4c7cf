"""Evaluation: what a rule decides once the store has answered.

The metric's own arithmetic belongs to its kind (`rule.metric.evaluator`,
see detectors.metric_kinds); this module does what every kind shares: the
rule's triggers and conditions, money limits per currency, age
requirements, and the alert a crossing makes.
"""

from __future__ import annotations

from collections.abc import Mapping

from detectors.aggregates import Observation
from detectors.counted import Counted, counted_ids
from detectors.decisions import ALERT_ID_PLACEHOLDER, Alert, AlertCandidate
from detectors.durations import format_duration_ms
from detectors.events import Event, Topic
from detectors.health_bands import BandLookup, no_bands
from detectors.rules import CountRequirement, Rule
from detectors.rules_lists import ListMembership, no_lists

__all__ = ["NONE_COUNTED", "evaluate"]

NONE_COUNTED: Mapping[str, Counted] = {}


def evaluate(
    rule: Rule,
    topic: Topic,
    trigger_topic: str,
    event: Event,
    observed: Mapping[str, Observation],
    now_ms: int,
    membership: ListMembership = no_lists,
    ruleset_version: str = "",
    bands: BandLookup = no_bands,
    counted: Mapping[str, Counted] = NONE_COUNTED,
) -> AlertCandidate | None:
    """Judge one event by one rule. `observed` maps agg_id → Observation for
    this event's entities. Returns None when the rule does not fire.
    `membership`: the control lists, for rules gated on one (`where: {list:
    watch}`); without it every list is empty. `ruleset_version`: the digest
    of the rule set `rule` belongs to, which the alert carries. `bands`: the
    merchants' health bands, for rules gated on one (detectors.health_bands).
    `counted`: the events the store listed for aggregates near a crossing
    (detectors.counted); the alert lists its main aggregate's."""
    if topic not in rule.topics or (rule.where and not all(c.matches(event) for c in rule.where)):
        return None
    if rule.lists and not all(c.holds(rule.entity, event, membership) for c in rule.lists):
        return None
    # Money limits name their currencies; events in any other are not judged.
    limits = rule.limits(event.currency)
    if limits is None:
        return None
    threshold, min_volume = limits
    # No observation: the event lacks the rule's entity (the store was not asked).
    main = observed.get(rule.metric.aggregate.agg_id)
    if main is None or main.value is None:
        return None
    evidence: dict[str, object] = {"aggregate": rule.metric.aggregate.kind.value}
    value = rule.metric.evaluator.value(rule, event, main, observed, min_volume, evidence)
    if value is None or not rule.comparison.holds(value, threshold):
        return None
    if not _requirements_hold(rule, event, observed, evidence):
        return None
    if rule.health_bands and not _band_holds(rule, event, bands, evidence):
        return None
    entity_ids = tuple(rule.metric.aggregate.entity_ids(event) or ())
    if not entity_ids:
        return None
    crossed = (main, value, threshold)
    decided = (now_ms, ruleset_version)
    listed = counted.get(rule.metric.aggregate.agg_id, ())
    return _candidate(rule, trigger_topic, event, entity_ids, crossed, evidence, decided, listed)


def _requirements_hold(
    rule: Rule, event: Event, observed: Mapping[str, Observation], evidence: dict[str, object]
) -> bool:
    """Every requirement holds; each one's value joins the evidence. An
    unanswered or late requirement does not hold: a rule never fires on
    evidence it could not read."""
    for req in rule.requires:
        seen = observed.get(req.aggregate.agg_id)
        if seen is None or seen.value is None or seen.value < 0:
            return False
        if isinstance(req, CountRequirement):
            if not req.comparison.holds(seen.value, req.value):
                return False
            evidence[req.label] = seen.value
            continue
        age = event.occurred_at_ms - seen.value
        if not req.comparison.holds(age, req.age_ms):
            return False
        name = "+".join(e.value for e in req.first_seen.entity)
        evidence[f"{name}_age"] = format_duration_ms(max(age, 0))
    return True


def _band_holds(rule: Rule, event: Event, bands: BandLookup, evidence: dict[str, object]) -> bool:
    """The event's merchant was in one of the rule's bands; a merchant
    without a snapshot then is in none."""
    merchant = getattr(event, "merchant_id", None)
    band = bands(merchant, event.occurred_at_ms) if merchant else None
    if band is None or band.value not in rule.health_bands:
        return False
    evidence["merchant_health_band"] = band.value
    return True


def _candidate(
    rule: Rule,
    trigger_topic: str,
    event: Event,
    entity_ids: tuple[str, ...],
    crossed: tuple[Observation, float, float],
    evidence: dict[str, object],
    decided: tuple[int, str],
    listed: Counted,
) -> AlertCandidate:
    """`crossed`: the main observation, the metric's value and the threshold
    it crossed (for a money rule, the one of the event's currency).
    `decided`: when, and under which rule set. `listed`: the main
    aggregate's ring, as the store read it with the value."""
    main, value, threshold = crossed
    now_ms, ruleset_version = decided
    metric = rule.metric
    start, end = metric.evaluator.span(metric, main, event)
    if len(entity_ids) > 1:
        evidence["key"] = dict(zip((e.value for e in rule.entity), entity_ids, strict=True))
    if rule.where or rule.lists:
        described = [c.describe() for c in rule.where] + [c.describe() for c in rule.lists]
        evidence["conditions"] = described
    alert = Alert(
        # Placeholder: the store numbers incidents under decisions.incident_base
        # and writes the id, so it does not depend on which event or which
        # interleaving tipped the incident.
        alert_id=ALERT_ID_PLACEHOLDER,
        rule_id=rule.rule_id,
        rule_version=rule.version,
        severity=rule.severity,
        entity_type=rule.entity[0],
        entity_id=entity_ids[0],
        window_ms=end - start,
        window_start_ms=start,
        observed=round(value, 6) if metric.evaluator.fractional else int(value),
        threshold=threshold,
        trigger_event_id=event.event_id,
        trigger_topic=trigger_topic,
        occurred_at_ms=event.occurred_at_ms,
        detected_at_ms=now_ms,
        mode=rule.mode,
        evidence=evidence,
        margin=rule.comparison.margin(value, threshold),
        # The currency of the sums the rule compared (never mixed: see detectors.money).
        currency=event.currency if metric.speaks_money else None,
        ruleset_version=ruleset_version,
        counted_event_ids=counted_ids(listed, event.event_id, event.occurred_at_ms, start, end),
    )
    return AlertCandidate(alert, entity_ids, start, end, rule.cooldown_ms)
