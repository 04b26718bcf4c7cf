"""The control contract: records risk ops publish on `risk-control` to steer
running workers (a kill switch, per-rule modes, lists, snoozes, releases of
freezes, the rule set itself).

Pure: parsing and the record types only; time is always an argument. The
topic is compacted and keyed by the object a record sets (`key()`), so the
last record of a key is the state of that object; a non-compacted audit
topic keeps every record. Each record carries who (`actor`), why
(`reason`), when (`issued_at_ms`) and an idempotency key (`control_id`).

The parser is strict (unknown fields, a key that does not match the
record, an unsupported `schema_version` are all refused): a record a
worker misreads would steer enforcement, so it is better refused, counted
and the last good state kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from detectors.errors import FraudstreamError
from detectors.list_names import ListEntityType, ListName
from detectors.release_types import FREEZE_ID_PATTERN, REASON_CODE_PATTERN, ReleaseType
from detectors.rulebook import Rulebook
from detectors.ruleset_check import checked_rulebook
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms

__all__ = [
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
    "parse_control",
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


E = TypeVar("E", bound=StrEnum)


class _Fields:
    """Reads the fields of one record, each at most once; `done` refuses the
    ones nobody read."""

    def __init__(self, kind: str, wire: Mapping[str, Any]) -> None:
        self.kind = kind
        self._wire = wire
        self._seen: set[str] = set()

    def fail(self, message: str) -> ControlRecordError:
        return ControlRecordError(self.kind, message)

    def _get(self, name: str, optional: bool) -> Any:
        self._seen.add(name)
        value = self._wire.get(name)
        if value is None and not optional:
            raise self.fail(f"{name}: required")
        return value

    def text(self, name: str, limit: int = MAX_ID, optional: bool = False) -> Any:
        value = self._get(name, optional)
        if value is None:
            return None
        if not isinstance(value, str) or not 1 <= len(value) <= limit:
            raise self.fail(f"{name}: a string of 1 to {limit} characters expected")
        if any(ord(c) < 32 for c in value):
            raise self.fail(f"{name}: control characters are not allowed")
        return value

    def enum(self, name: str, enum: type[E]) -> E:
        value = self._get(name, False)
        try:
            return enum(value)
        except ValueError:
            allowed = ", ".join(m.value for m in enum)
            raise self.fail(f"{name}: {value!r} is not one of {allowed}") from None

    def time(self, name: str, optional: bool = False) -> Any:
        value = self.text(name, 64, optional)
        if value is None:
            return None
        try:
            return parse_rfc3339_ms(value)
        except ValueError as exc:
            raise self.fail(f"{name}: not an RFC 3339 time ({exc})") from None

    def boolean(self, name: str) -> bool:
        value = self._get(name, False)
        if not isinstance(value, bool):
            raise self.fail(f"{name}: true or false expected")
        return value

    def done(self) -> None:
        extra = sorted(set(self._wire) - self._seen)
        if extra:
            raise self.fail(f"unknown fields: {', '.join(extra)}")


def _provenance(f: _Fields) -> Provenance:
    version = f._get("schema_version", False)
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise f.fail(f"schema_version: {version!r} is not supported (expected {SCHEMA_VERSION})")
    return Provenance(
        control_id=f.text("control_id"),
        actor=f.text("actor"),
        reason=f.text("reason", MAX_REASON),
        issued_at_ms=f.time("issued_at"),
    )


def _kill_switch(f: _Fields, meta: Provenance) -> ControlRecord:
    return KillSwitch(f.enum("state", Switch), meta)


def _rule_id(f: _Fields, optional: bool = False) -> Any:
    rule_id = f.text("rule_id", optional=optional)
    if rule_id == "*":
        raise f.fail("rule_id: '*' is not a rule")
    return rule_id


def _rule_mode(f: _Fields, meta: Provenance) -> ControlRecord:
    return RuleMode(_rule_id(f), f.enum("mode", RuleModeSetting), meta)


def _list_entry(f: _Fields, meta: Provenance) -> ControlRecord:
    entry = ListEntry(
        list=f.enum("list", ListName),
        entity_type=f.enum("entity_type", ListEntityType),
        entity_id=f.text("entity_id"),
        expires_at_ms=f.time("expires_at", optional=True),
        removed=f.boolean("removed"),
        meta=meta,
    )
    if entry.expires_at_ms is not None and entry.expires_at_ms <= meta.issued_at_ms:
        raise f.fail("expires_at: must be after issued_at")
    return entry


def _snooze(f: _Fields, meta: Provenance) -> ControlRecord:
    snooze = Snooze(
        entity_type=f.enum("entity_type", ListEntityType),
        entity_id=f.text("entity_id"),
        rule_id=_rule_id(f, optional=True),
        expires_at_ms=f.time("expires_at"),
        meta=meta,
    )
    span = snooze.expires_at_ms - meta.issued_at_ms
    if not 0 < span <= MAX_SNOOZE_MS:
        raise f.fail("expires_at: must be after issued_at and at most 30 days later")
    return snooze


def _release(f: _Fields, meta: Provenance) -> ControlRecord:
    freeze_id, code = f.text("freeze_id", 35), f.text("reason_code", 64)
    if not FREEZE_ID_PATTERN.fullmatch(freeze_id):
        raise f.fail("freeze_id: 'fz_' and 32 lowercase hex digits expected")
    if not REASON_CODE_PATTERN.fullmatch(code):
        raise f.fail("reason_code: lowercase letters, digits, '_', '.', '-' expected")
    release_type = f.enum("release_type", ReleaseType)
    if release_type is ReleaseType.EXPIRED:
        raise f.fail("release_type: 'expired' is issued by the workers, not by a control record")
    return Release(freeze_id, release_type, code, meta)


def _breaker(f: _Fields, meta: Provenance) -> ControlRecord:
    return Breaker(f.enum("state", BreakerState), meta)


def _ruleset(f: _Fields, meta: Provenance) -> ControlRecord:
    text, version = f._get("rules_yaml", False), f._get("ruleset_version", False)
    try:
        return Ruleset(text, checked_rulebook(text, version), meta)
    except ValueError as exc:
        raise f.fail(str(exc)) from None


_READERS: dict[ControlKind, Callable[[_Fields, Provenance], ControlRecord]] = {
    ControlKind.KILL_SWITCH: _kill_switch,
    ControlKind.RULE_MODE: _rule_mode,
    ControlKind.LIST_ENTRY: _list_entry,
    ControlKind.SNOOZE: _snooze,
    ControlKind.RELEASE: _release,
    ControlKind.BREAKER: _breaker,
    ControlKind.RULESET: _ruleset,
}


def parse_control(key: bytes | str | None, value: bytes | str | Mapping[str, Any]) -> ControlRecord:
    """One record of `risk-control` (its Kafka key and JSON value), or
    ControlRecordError saying what is wrong. `key` None skips the key check
    (a record read from a file, not from the topic)."""
    wire = _object(value)
    raw_kind = wire.get("kind")
    try:
        kind = ControlKind(raw_kind if isinstance(raw_kind, str) else "")
    except ValueError:
        allowed = ", ".join(k.value for k in ControlKind)
        raise ControlRecordError("unknown", f"kind: {raw_kind!r} is not one of {allowed}") from None
    fields = _Fields(kind.value, wire)
    fields._seen.add("kind")
    record = _READERS[kind](fields, _provenance(fields))
    fields.done()
    if key is not None:
        text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
        if text != record.key():
            raise fields.fail(f"key {text!r} does not match the record (expected {record.key()!r})")
    return record


def _object(value: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    try:
        wire = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlRecordError("unknown", f"not JSON: {exc}") from None
    if not isinstance(wire, dict):
        raise ControlRecordError("unknown", "a JSON object expected")
    return wire
