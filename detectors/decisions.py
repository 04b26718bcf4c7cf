"""Decisions and their evidence, in the shape published downstream.

Ids are deterministic digests of what identifies an incident, never random
and never wall-clock based, so a replay of the same events yields the same
ids and consumers can de-duplicate on them.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from detectors.rules import (
    BENEFIT_SCOPES,
    ActionKind,
    EntityType,
    Mode,
    Rule,
    Severity,
)
from detectors.timestamps import format_rfc3339_ms

__all__ = [
    "ALERT_ID_PLACEHOLDER",
    "DEGRADED_TRACK",
    "INCIDENT_EPOCH_MS",
    "Alert",
    "AlertCandidate",
    "AlertTag",
    "Freeze",
    "Suppression",
    "combine_freezes",
    "degrade",
    "deterministic_id",
    "freeze_for",
    "incident_base",
    "incident_epoch",
]


def deterministic_id(prefix: str, *parts: object) -> str:
    """`prefix_` + 128 bits of SHA-256 over the parts (unit-separator joined)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:32]}"


ALERT_ID_PLACEHOLDER = "al_" + "?" * 32
INCIDENT_EPOCH_MS = 90 * 86_400_000


def incident_base(rule_id: str, version: int, entity_ids: tuple[str, ...]) -> str:
    """What identifies a (rule, entity) pair across incidents."""
    return hashlib.sha256("\x1f".join([rule_id, str(version), *entity_ids]).encode()).hexdigest()[
        :32
    ]


def incident_epoch(window_end_ms: int) -> int:
    return window_end_ms // INCIDENT_EPOCH_MS


# Degraded decisions number their incidents apart from the rule's own.
DEGRADED_TRACK = "~degraded"


class Suppression(StrEnum):
    """Why a freeze a rule asked for was not published (a metric label, and
    on the alert as `suppressed_by` when the whole enforcement was off)."""

    KILL_SWITCH = "kill_switch"
    RULE_SHADOW = "rule_shadow"
    ALLOW_LIST = "allow_list"
    SNOOZE = "snooze"
    RELEASED = "released"  # its freeze id was released: the incident does not freeze again
    GUARDRAIL = "guardrail"  # the rule froze more entities than its budget allows
    BREAKER = "breaker"  # the global circuit breaker is tripped (fund freezes)


class AlertTag(StrEnum):
    """Labels on an alert for whoever triages it (the wire's `tags`)."""

    WATCH = "watch"  # an entity of the trigger event is on the watch list


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 6)


@dataclass(frozen=True, slots=True)
class Alert:
    """An explainable alert: everything risk ops need to judge it is inside."""

    alert_id: str
    rule_id: str
    rule_version: int
    severity: Severity
    entity_type: EntityType
    entity_id: str
    window_ms: int
    window_start_ms: int
    observed: float
    threshold: float
    trigger_event_id: str
    trigger_topic: str
    occurred_at_ms: int
    detected_at_ms: int
    mode: Mode
    evidence: dict[str, Any] = field(default_factory=dict)
    margin: float = 0.0
    currency: str | None = None  # of the money observed and threshold, for money rules
    suppressed_by: Suppression | None = None  # a freeze it asked for was held back
    tags: tuple[AlertTag, ...] = ()
    # The rule set the decision was judged under (detectors.ruleset_digest).
    ruleset_version: str = ""
    # The events the main aggregate counted in the window (up to the
    # store's ring size, oldest first; detectors.counted).
    counted_event_ids: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "alert_id": self.alert_id,
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "severity": self.severity.value,
            "entity_type": self.entity_type.value,
            "entity_id": self.entity_id,
            "window": {
                "length_ms": self.window_ms,
                "start": format_rfc3339_ms(self.window_start_ms),
                "end": format_rfc3339_ms(self.window_start_ms + self.window_ms),
            },
            "observed": _number(self.observed),
            "threshold": _number(self.threshold),
            "margin": _number(self.margin),
            "evidence": self.evidence,
            "trigger_event_id": self.trigger_event_id,
            "trigger_topic": self.trigger_topic,
            "occurred_at": format_rfc3339_ms(self.occurred_at_ms),
            "detected_at": format_rfc3339_ms(self.detected_at_ms),
            "mode": self.mode.value,
        }
        if self.currency is not None:
            wire["currency"] = self.currency
        if self.suppressed_by is not None:
            wire["suppressed_by"] = self.suppressed_by.value
        if self.tags:
            wire["tags"] = [t.value for t in self.tags]
        if self.counted_event_ids:
            wire["counted_event_ids"] = list(self.counted_event_ids)
        wire["ruleset_version"] = self.ruleset_version
        return wire


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    """A rule crossed its threshold. Whether this opens a new incident or belongs
    to an open one is settled atomically by the store."""

    alert: Alert
    entity_ids: tuple[str, ...]
    incident_start_ms: int
    incident_end_ms: int
    cooldown_ms: int


def degrade(candidate: AlertCandidate, stalled_topics: Iterable[str]) -> AlertCandidate:
    """The same decision, marked as made on possibly incomplete facts: an input
    topic that feeds what the rule reads was stalled behind the event. Such a
    decision may still alert, for a human to judge, but never freezes:
    freezing an honest merchant on half the evidence is the worse error."""
    names = ", ".join(sorted(stalled_topics))
    evidence = {
        **candidate.alert.evidence,
        "degraded": True,
        "degraded_reason": (
            f"judged while {names} had not been read up to the event's time "
            "(a stalled partition); counts from it may be missing, so no freeze"
        ),
    }
    alert = dataclasses.replace(candidate.alert, evidence=evidence)
    return dataclasses.replace(candidate, alert=alert)


@dataclass(frozen=True, slots=True)
class Freeze:
    freeze_id: str
    kind: ActionKind  # BENEFIT_FREEZE or FUND_FREEZE
    subject_type: EntityType
    subject_id: str
    scope: str
    rule_id: str
    severity: Severity
    reason_alert_id: str
    expires_at_ms: int
    issued_at_ms: int
    amount_minor: int | None = None
    currency: str | None = None
    ruleset_version: str = ""  # its alert's

    def to_wire(self) -> dict[str, Any]:
        common: dict[str, Any] = {
            "freeze_id": self.freeze_id,
            "action": "freeze",
            "rule_id": self.rule_id,
            "reason_alert_id": self.reason_alert_id,
            "expires_at": format_rfc3339_ms(self.expires_at_ms),
            "issued_at": format_rfc3339_ms(self.issued_at_ms),
            "ruleset_version": self.ruleset_version,
        }
        if self.kind is ActionKind.FUND_FREEZE:
            out: dict[str, Any] = {**common, "merchant_id": self.subject_id, "scope": self.scope}
            if self.amount_minor is not None:
                out["amount_minor"] = self.amount_minor
                out["currency"] = self.currency
            return out
        return {
            **common,
            "subject_type": self.subject_type.value,
            "subject_id": self.subject_id,
            "scope": self.scope,
        }


def freeze_for(
    rule: Rule, alert: Alert, merchant_id: str | None, payout: tuple[str, int, str] | None
) -> Freeze | None:
    """The freeze a rule's action asks for, or None (alert-only, or shadow mode).
    Fund freezes hold the merchant's payouts; `payout` scope only the payout
    that triggered (id, amount) when there is one."""
    action = rule.action
    if action.kind is ActionKind.ALERT or rule.mode is Mode.SHADOW or action.duration_ms is None:
        return None
    scope = action.scope or ""
    amount: int | None = None
    currency: str | None = None
    if action.kind is ActionKind.FUND_FREEZE:
        subject_type, subject_id = EntityType.MERCHANT, merchant_id or ""
        if scope == "payout" and payout is not None:
            scope, amount, currency = f"payout:{payout[0]}", payout[1], payout[2]
        elif scope == "payout":
            scope = "payouts"
    else:
        subject_type, subject_id = alert.entity_type, alert.entity_id
    if not subject_id:
        return None
    return Freeze(
        freeze_id=deterministic_id(
            "fz", alert.alert_id, action.kind.value, subject_type.value, subject_id
        ),
        kind=action.kind,
        subject_type=subject_type,
        subject_id=subject_id,
        scope=scope,
        rule_id=rule.rule_id,
        severity=rule.severity,
        reason_alert_id=alert.alert_id,
        expires_at_ms=alert.occurred_at_ms + action.duration_ms,
        issued_at_ms=alert.detected_at_ms,
        amount_minor=amount,
        currency=currency,
        ruleset_version=alert.ruleset_version,
    )


def combine_freezes(freezes: Sequence[Freeze]) -> list[Freeze]:
    """Several rules firing on one event → one freeze per (kind, subject): the
    highest severity wins (then the broader scope, then the later expiry)."""
    best: dict[tuple[ActionKind, EntityType, str], Freeze] = {}
    for f in freezes:
        key = (f.kind, f.subject_type, f.subject_id)
        current = best.get(key)
        if current is None or _strength(f) > _strength(current):
            best[key] = f
    return list(best.values())


def _strength(f: Freeze) -> tuple[int, int, int]:
    if f.kind is ActionKind.BENEFIT_FREEZE:
        breadth = BENEFIT_SCOPES.index(f.scope) if f.scope in BENEFIT_SCOPES else 0
    else:
        breadth = 1 if f.scope == "payouts" else 0
    return (f.severity.rank, breadth, f.expires_at_ms)
