"""Decisions and their evidence, in the shape published downstream.

Ids are deterministic digests of what identifies an incident, never random
and never wall-clock based, so a replay of the same events yields the same
ids and consumers can de-duplicate on them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from detectors.contract import format_rfc3339_ms
from detectors.rules import EntityType, Mode, Severity


def deterministic_id(prefix: str, *parts: object) -> str:
    """`prefix_` + 128 bits of SHA-256 over the parts (unit-separator joined)."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:32]}"


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
    observed: int
    threshold: int
    trigger_event_id: str
    trigger_topic: str
    occurred_at_ms: int
    detected_at_ms: int
    mode: Mode
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
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
            "observed": self.observed,
            "threshold": self.threshold,
            "margin": self.observed - self.threshold,
            "evidence": self.evidence,
            "trigger_event_id": self.trigger_event_id,
            "trigger_topic": self.trigger_topic,
            "occurred_at": format_rfc3339_ms(self.occurred_at_ms),
            "detected_at": format_rfc3339_ms(self.detected_at_ms),
            "mode": self.mode.value,
        }


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    """A rule crossed its threshold. Whether this opens a new incident or belongs
    to an open one is settled atomically by the store (see IncidentOutcome)."""

    alert: Alert
    incident_start_ms: int
    incident_end_ms: int  # exclusive end of the window that crossed
    cooldown_ms: int
