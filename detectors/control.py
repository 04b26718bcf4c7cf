"""The control contract: records risk ops publish on `risk-control` to steer
running workers (a kill switch, per-rule modes, lists, snoozes, releases of
freezes, the rule set itself).

Pure: parsing and the record types only; time is always an argument. The
topic is compacted and keyed by the object a record sets (`key()`), so the
last record of a key is the state of that object; a non-compacted audit
topic keeps every record. Each record carries who (`actor`), why
(`reason`), when (`issued_at_ms`) and an idempotency key (`control_id`).

Records are read by `detectors.control_parsing.parse_control`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from detectors.errors import FraudstreamError
from detectors.list_names import ListEntityType, ListName
from detectors.release_types import ReleaseType
from detectors.rulebook import Rulebook
from detectors.timestamps import format_rfc3339_ms

__all__ = [
    "MAX_ID",
    "MAX_REASON",
    "MAX_SNOOZE_MS",
    "SCHEMA_VERSION",
    "Breaker",
    "BreakerState",
    "ControlKind",
    "ControlRecord",
    "ControlRecordError",
    "KillSwitch",
    "ListEntityType",
    "ListEntry",
    "ListName",
    "Provenance",
    "Release",
    "RuleMode",
    "RuleModeSetting",
    "Ruleset",
    "Snooze",
    "Switch",
    "control_key",
    "snooze_key",
]

SCHEMA_VERSION = 1
MAX_SNOOZE_MS = 30 * 86_400_000
MAX_ID = 128
MAX_REASON = 512


class ControlKind(StrEnum):
    KILL_SWITCH = "kill-switch"
    RULE_MODE = "rule-mode"
    LIST_ENTRY = "list-entry"
    SNOOZE = "snooze"
    RELEASE = "release"
    BREAKER = "breaker"
    RULESET = "ruleset"


class Switch(StrEnum):
    ON = "on"
    OFF = "off"


class RuleModeSetting(StrEnum):
    """`shadow`: alerts marked shadow, never a freeze; `off`: the rule does not
    alert at all; `enforce`: as the rule file says."""

    SHADOW = "shadow"
    ENFORCE = "enforce"
    OFF = "off"


class ControlRecordError(FraudstreamError):
    """A control record that cannot be used. `kind` is the record's kind when
    it could be read (a metric label), else `unknown`."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        self.message = message
        super().__init__(f"{kind} record: {message}")


def control_key(*parts: str) -> str:
    """Key parts joined by ':' with ':' and '%' escaped inside each part, so
    an id containing ':' cannot alias another object's key."""
    return ":".join(p.replace("%", "%25").replace(":", "%3A") for p in parts)


@dataclass(frozen=True, slots=True)
class Provenance:
    control_id: str
    actor: str
    reason: str
    issued_at_ms: int

    def to_wire(self, kind: ControlKind) -> dict[str, Any]:
        return {
            "kind": kind.value,
            "schema_version": SCHEMA_VERSION,
            "control_id": self.control_id,
            "actor": self.actor,
            "reason": self.reason,
            "issued_at": format_rfc3339_ms(self.issued_at_ms),
        }


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """On: no freeze anywhere; alerts continue, marked `suppressed_by`."""

    state: Switch
    meta: Provenance
    kind = ControlKind.KILL_SWITCH

    def key(self) -> str:
        return ControlKind.KILL_SWITCH.value

    def to_wire(self) -> dict[str, Any]:
        return {**self.meta.to_wire(self.kind), "state": self.state.value}


@dataclass(frozen=True, slots=True)
class RuleMode:
    rule_id: str
    mode: RuleModeSetting
    meta: Provenance
    kind = ControlKind.RULE_MODE

    def key(self) -> str:
        return control_key(self.kind.value, self.rule_id)

    def to_wire(self) -> dict[str, Any]:
        return {**self.meta.to_wire(self.kind), "rule_id": self.rule_id, "mode": self.mode.value}


@dataclass(frozen=True, slots=True)
class ListEntry:
    """Membership of an entity in a list; `removed` is the tombstone (a
    record, not a null value, so the audit copy says who removed it and why)."""

    list: ListName
    entity_type: ListEntityType
    entity_id: str
    expires_at_ms: int | None
    removed: bool
    meta: Provenance
    kind = ControlKind.LIST_ENTRY

    def key(self) -> str:
        return control_key("list", self.list.value, self.entity_type.value, self.entity_id)

    def active(self, at_ms: int) -> bool:
        return not self.removed and (self.expires_at_ms is None or at_ms < self.expires_at_ms)

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.meta.to_wire(self.kind),
            "list": self.list.value,
            "entity_type": self.entity_type.value,
            "entity_id": self.entity_id,
            "expires_at": _time_or_none(self.expires_at_ms),
            "removed": self.removed,
        }


@dataclass(frozen=True, slots=True)
class Snooze:
    """No alert and no freeze for the entity (for one rule when `rule_id` is
    set) until `expires_at_ms`, compared with event time."""

    entity_type: ListEntityType
    entity_id: str
    rule_id: str | None
    expires_at_ms: int
    meta: Provenance
    kind = ControlKind.SNOOZE

    def key(self) -> str:
        return snooze_key(self.entity_type, self.entity_id, self.rule_id)

    def active(self, at_ms: int) -> bool:
        return at_ms < self.expires_at_ms

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.meta.to_wire(self.kind),
            "entity_type": self.entity_type.value,
            "entity_id": self.entity_id,
            "rule_id": self.rule_id,
            "expires_at": format_rfc3339_ms(self.expires_at_ms),
        }


@dataclass(frozen=True, slots=True)
class Release:
    """End one freeze before its expiry. `reason_code` classifies it for
    reports, `meta.reason` is the free-text note."""

    freeze_id: str
    release_type: ReleaseType
    reason_code: str
    meta: Provenance
    kind = ControlKind.RELEASE

    def key(self) -> str:
        return control_key(self.kind.value, self.freeze_id)

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.meta.to_wire(self.kind),
            "freeze_id": self.freeze_id,
            "release_type": self.release_type.value,
            "reason_code": self.reason_code,
        }


class BreakerState(StrEnum):
    TRIPPED = "tripped"
    RESET = "reset"


@dataclass(frozen=True, slots=True)
class Breaker:
    """The global circuit breaker. Tripped (by the workers, actor `breaker`,
    or by a human): no new fund freeze, the alerts go out marked
    `suppressed_by: breaker`. Only a human `reset` re-arms it; its
    `control_id` also starts the breaker's counts afresh."""

    state: BreakerState
    meta: Provenance
    kind = ControlKind.BREAKER

    def key(self) -> str:
        return ControlKind.BREAKER.value

    def to_wire(self) -> dict[str, Any]:
        return {**self.meta.to_wire(self.kind), "state": self.state.value}


@dataclass(frozen=True, slots=True)
class Ruleset:
    """The whole rule file every worker runs instead of its configured one.
    `rulebook` is the text parsed and validated once, when the record is
    read (a record whose rules do not parse is refused, never folded)."""

    rules_yaml: str
    rulebook: Rulebook = field(compare=False, repr=False)
    meta: Provenance
    kind = ControlKind.RULESET

    @property
    def ruleset_version(self) -> str:
        return self.rulebook.digest

    def key(self) -> str:
        return ControlKind.RULESET.value

    def to_wire(self) -> dict[str, Any]:
        return {
            **self.meta.to_wire(self.kind),
            "ruleset_version": self.ruleset_version,
            "rules_yaml": self.rules_yaml,
        }


ControlRecord = KillSwitch | RuleMode | ListEntry | Snooze | Release | Breaker | Ruleset


def snooze_key(entity_type: ListEntityType, entity_id: str, rule_id: str | None) -> str:
    """`*` for every rule: no rule id is `*` (parse refuses it)."""
    return control_key("snooze", entity_type.value, rule_id or "*", entity_id)


def _time_or_none(ms: int | None) -> str | None:
    return None if ms is None else format_rfc3339_ms(ms)
