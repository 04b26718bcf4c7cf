"""What the control snapshot does to a decision, as a pure function of
(snapshot, candidate decision, event time), so the live worker and the
backtest steer identically. Block-listed entities also get an alert of
their own on every event (`block_list_alerts`), never a freeze.

Order of precedence, most silencing first: a rule set `off` does not alert;
an allow-listed or snoozed entity gets no alert; a rule forced to `shadow`
alerts marked shadow and never freezes; the kill switch lets every alert
through, marked `suppressed_by: kill_switch`, and no freeze; a tripped
circuit breaker holds fund freezes (the alert marked `suppressed_by:
breaker`). Expiry is judged against the event's time, never the wall clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from detectors.control import ListEntityType, ListName, RuleModeSetting
from detectors.control_snapshot import ControlSnapshot
from detectors.decisions import Alert, AlertCandidate, Freeze, Suppression, deterministic_id
from detectors.events import Event
from detectors.rules import ActionKind, Mode, Severity
from detectors.rules_entities import EntityType, entity_value
from detectors.rules_lists import listable

__all__ = [
    "BLOCK_LIST_RULE",
    "Silence",
    "Steered",
    "block_list_alerts",
    "breaker_suppression",
    "freeze_suppression",
    "steer",
]


class Silence(StrEnum):
    """Why a rule's alert was not published at all (a metric label)."""

    RULE_OFF = "rule_off"
    ALLOW_LIST = "allow_list"
    SNOOZE = "snooze"


@dataclass(frozen=True, slots=True)
class Steered:
    """`candidate` None: silenced for `silence`. Otherwise the candidate to
    settle, and `suppressed` when a freeze it would ask for must not be made."""

    candidate: AlertCandidate | None
    silence: Silence | None = None
    suppressed: Suppression | None = None


def _exempt(
    snapshot: ControlSnapshot, entity_type: EntityType, entity_id: str, rule_id: str, at_ms: int
) -> Silence | None:
    kind = listable(entity_type)
    if kind is None:
        return None
    if snapshot.listed(ListName.ALLOW, kind, entity_id, at_ms) is not None:
        return Silence.ALLOW_LIST
    if snapshot.snoozed(kind, entity_id, rule_id, at_ms) is not None:
        return Silence.SNOOZE
    return None


def steer(
    snapshot: ControlSnapshot, candidate: AlertCandidate, at_ms: int, freezes: bool
) -> Steered:
    """`freezes`: the rule would freeze on this decision (an enforcing rule
    with a freeze action, judged on complete facts)."""
    alert = candidate.alert
    mode = snapshot.rule_mode(alert.rule_id)
    if mode is RuleModeSetting.OFF:
        return Steered(None, Silence.RULE_OFF)
    silence = _exempt(snapshot, alert.entity_type, alert.entity_id, alert.rule_id, at_ms)
    if silence is not None:
        return Steered(None, silence)
    if mode is RuleModeSetting.SHADOW and alert.mode is Mode.ENFORCE:
        shadowed = dataclasses.replace(alert, mode=Mode.SHADOW)
        return Steered(
            dataclasses.replace(candidate, alert=shadowed),
            suppressed=Suppression.RULE_SHADOW if freezes else None,
        )
    if snapshot.kill_switch and freezes:
        marked = dataclasses.replace(alert, suppressed_by=Suppression.KILL_SWITCH)
        return Steered(
            dataclasses.replace(candidate, alert=marked), suppressed=Suppression.KILL_SWITCH
        )
    return Steered(candidate)


def freeze_suppression(snapshot: ControlSnapshot, freeze: Freeze, at_ms: int) -> Suppression | None:
    """A freeze's subject may differ from its alert's entity (a rule on a user
    freezes the merchant's payouts): the subject's own exemptions apply."""
    if snapshot.kill_switch:
        return Suppression.KILL_SWITCH
    silence = _exempt(snapshot, freeze.subject_type, freeze.subject_id, freeze.rule_id, at_ms)
    if silence is Silence.ALLOW_LIST:
        return Suppression.ALLOW_LIST
    if silence is Silence.SNOOZE:
        return Suppression.SNOOZE
    return breaker_suppression(snapshot, freeze)


def breaker_suppression(snapshot: ControlSnapshot, freeze: Freeze) -> Suppression | None:
    """A tripped breaker holds fund freezes only: it guards merchants' money
    against a flood; a benefit freeze (vouchers, subsidies of one user) is
    narrow, and each rule's freeze budget bounds those."""
    if snapshot.breaker_tripped and freeze.kind is ActionKind.FUND_FREEZE:
        return Suppression.BREAKER
    return None


# The rule id of block-list alerts: no rule file can use it (rule ids are
# letters, digits, '_' and '-'), so consumers can tell them apart.
BLOCK_LIST_RULE = "control:block-list"


def block_list_alerts(
    snapshot: ControlSnapshot, event: Event, trigger_topic: str, now_ms: int
) -> list[Alert]:
    """One alert per block-listed entity of `event` (its entry active at the
    event's time). Its id is a digest of the event and the entity, so a
    redelivered event republishes the same alert."""
    at_ms = event.occurred_at_ms
    out = []
    for kind in ListEntityType:
        entity_type = EntityType(kind.value)
        entity_id = entity_value(event, entity_type)
        entry = entity_id and snapshot.listed(ListName.BLOCK, kind, entity_id, at_ms)
        if not entry or entity_id is None:
            continue
        out.append(
            Alert(
                alert_id=deterministic_id(
                    "al", BLOCK_LIST_RULE, event.event_id, kind.value, entity_id
                ),
                rule_id=BLOCK_LIST_RULE,
                rule_version=1,
                severity=Severity.HIGH,
                entity_type=entity_type,
                entity_id=entity_id,
                window_ms=0,
                window_start_ms=at_ms,
                observed=1,
                threshold=1,
                trigger_event_id=event.event_id,
                trigger_topic=trigger_topic,
                occurred_at_ms=at_ms,
                detected_at_ms=now_ms,
                mode=Mode.ENFORCE,
                evidence={
                    "list": ListName.BLOCK.value,
                    "reason": entry.meta.reason,
                    "actor": entry.meta.actor,
                    "control_id": entry.meta.control_id,
                },
            )
        )
    return out
