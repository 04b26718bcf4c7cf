"""Reading a `risk-control` record: the strict parser of the control
contract (detectors.control holds the record types).

Strict, because a record a worker misreads would steer enforcement: unknown
fields, a key that does not match the record and an unsupported
`schema_version` are all refused, so the record is counted and the last
good state of its object kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from detectors.control import (
    MAX_ID,
    MAX_REASON,
    MAX_SNOOZE_MS,
    SCHEMA_VERSION,
    Breaker,
    BreakerState,
    ControlKind,
    ControlRecord,
    ControlRecordError,
    KillSwitch,
    ListEntityType,
    ListEntry,
    ListName,
    Provenance,
    Release,
    RuleMode,
    RuleModeSetting,
    Ruleset,
    Snooze,
    Switch,
)
from detectors.release_types import FREEZE_ID_PATTERN, REASON_CODE_PATTERN, ReleaseType
from detectors.ruleset_check import checked_rulebook
from detectors.timestamps import parse_rfc3339_ms

__all__ = ["parse_control"]

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
