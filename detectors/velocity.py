"""Velocity rule family: too many events of one entity in an event-time window."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.contract import format_rfc3339_ms
from detectors.decisions import Alert, AlertCandidate, deterministic_id
from detectors.rules import VelocityRule
from detectors.windows import busiest_window_containing

EVIDENCE_SAMPLE = 20  # event ids listed in an alert; the count is always exact


def evaluate(
    rule: VelocityRule,
    *,
    entity_id: str,
    trigger_event_id: str,
    trigger_topic: str,
    trigger_ms: int,
    log: Sequence[tuple[str, int]],
    now_ms: int,
    log_truncated: bool = False,
) -> AlertCandidate | None:
    """Judge one event against the entity's event log around its time.

    `log` holds (event_id, event_ms) pairs sorted by time, covering at least
    (trigger_ms - window, trigger_ms + window) and including the trigger, unless
    `log_truncated` says the store capped it: then the count is a lower bound.
    The alert id depends on the rule, the entity and the left edge of the
    busiest window, not on which event tipped it, so replays agree.
    """
    times = [t for _, t in log]
    busiest = busiest_window_containing(times, trigger_ms, rule.window_ms)
    if busiest.count < rule.threshold:
        return None
    in_window = [eid for eid, t in log if busiest.start_ms <= t < busiest.end_ms]
    alert = Alert(
        alert_id=deterministic_id(
            "al", rule.rule_id, rule.version, rule.entity_type.value, entity_id, busiest.start_ms
        ),
        rule_id=rule.rule_id,
        rule_version=rule.version,
        severity=rule.severity,
        entity_type=rule.entity_type,
        entity_id=entity_id,
        window_ms=rule.window_ms,
        window_start_ms=busiest.start_ms,
        observed=busiest.count,
        threshold=rule.threshold,
        trigger_event_id=trigger_event_id,
        trigger_topic=trigger_topic,
        occurred_at_ms=trigger_ms,
        detected_at_ms=now_ms,
        mode=rule.mode,
        evidence={
            "aggregate": "count",
            "count": busiest.count,
            "count_is_lower_bound": log_truncated,
            "event_ids": in_window[:EVIDENCE_SAMPLE],
            "event_ids_truncated": len(in_window) > EVIDENCE_SAMPLE,
            "first_event_at": format_rfc3339_ms(busiest.start_ms),
            "last_event_at": format_rfc3339_ms(
                max(t for _, t in log if busiest.start_ms <= t < busiest.end_ms)
            ),
        },
    )
    return AlertCandidate(
        alert=alert,
        incident_start_ms=busiest.start_ms,
        incident_end_ms=busiest.end_ms,
        cooldown_ms=rule.cooldown_ms,
    )
