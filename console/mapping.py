"""Kafka record → table rows, pure: no I/O, no clock. The indexer calls
`index_record` for every record it reads; a record that cannot be used
becomes one `RejectedRow` saying why (kept, counted, logged), never an
exception, so one bad record cannot stop the indexer or hide the next one.

The checks are those the rows need (ids, enums, times), not a second copy
of the workers' validation: the body is kept whole for the pages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from console.rows import (
    AlertRow,
    AuditRow,
    ControlRow,
    FreezeKind,
    FreezeRow,
    Position,
    RejectedRow,
    RejectReason,
    ReleaseRow,
    Row,
    Source,
    VerdictRow,
)
from detectors.control import ControlRecordError
from detectors.control_parsing import parse_control
from detectors.errors import ContractViolation
from detectors.release_types import ReleaseType
from detectors.rules import Mode, Severity
from detectors.rules_entities import EntityType
from detectors.timestamps import parse_rfc3339_ms
from detectors.verdicts import parse_verdict

__all__ = ["VALUE_KEPT_BYTES", "RecordError", "index_record", "rejected"]

VALUE_KEPT_BYTES = 64 * 1024
E = TypeVar("E", bound=StrEnum)


class RecordError(Exception):
    def __init__(self, reason: RejectReason, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(f"{reason.value}: {message}")


def index_record(
    source: Source, position: Position, key: bytes | None, value: bytes | None
) -> tuple[Row, ...]:
    """The rows one record gives; () for a tombstone on `risk-control` (a
    deleted key has no control record to show)."""
    try:
        return _rows(source, position, key, value)
    except RecordError as exc:
        return (rejected(position, key, value, exc.reason, exc.message),)


def rejected(
    position: Position,
    key: bytes | None,
    value: bytes | None,
    reason: RejectReason,
    message: str,
) -> RejectedRow:
    raw = value or b""
    return RejectedRow(
        position=position,
        key=key,
        value=None if value is None else raw[:VALUE_KEPT_BYTES],
        value_size=len(raw),
        value_sha256=hashlib.sha256(raw).hexdigest(),
        value_truncated=len(raw) > VALUE_KEPT_BYTES,
        reason=reason,
        message=message[:1000],
    )


def _rows(
    source: Source, position: Position, key: bytes | None, value: bytes | None
) -> tuple[Row, ...]:
    if value is None:
        if source is Source.CONTROL:
            return ()
        raise RecordError(RejectReason.EMPTY_VALUE, "the record has no value")
    text, wire = _decode(value)
    if source is Source.ALERTS:
        return (_alert(_Wire(wire), text),)
    if source is Source.CONTROL:
        return _control(key, wire, text, position)
    if source is Source.VERDICTS:
        return _verdict(value, text)
    kind = FreezeKind.BENEFIT if source is Source.BENEFIT_FREEZES else FreezeKind.FUND
    action = wire.get("action")
    if action == "freeze":
        return (_freeze(_Wire(wire), kind, text),)
    if action == "release":
        return (_release(_Wire(wire), kind, text),)
    raise RecordError(RejectReason.BAD_ENUM, f"action: {action!r} is not freeze or release")


def _decode(value: bytes) -> tuple[str, dict[str, Any]]:
    if not value:
        raise RecordError(RejectReason.EMPTY_VALUE, "the value is empty")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(RejectReason.INVALID_UTF8, f"value is not UTF-8: {exc}") from None
    try:
        wire = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise RecordError(RejectReason.INVALID_JSON, f"value is not valid JSON: {exc}") from None
    if not isinstance(wire, dict):
        raise RecordError(RejectReason.NOT_AN_OBJECT, "value is not a JSON object")
    if any("\x00" in s for s in _strings(wire)):
        raise RecordError(RejectReason.NUL_CHARACTER, "a string holds U+0000")
    return text, wire


def _no_constant(name: str) -> Any:
    """NaN and Infinity: Python reads them, JSON (and Postgres) does not."""
    raise ValueError(f"{name} is not a JSON value")


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from item.keys()
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


class _Wire:
    """Typed reads of one JSON object; each failure names the field."""

    def __init__(self, wire: Mapping[str, Any]) -> None:
        self.wire = wire

    def text(self, name: str) -> str:
        value = self.wire.get(name)
        if value is None:
            raise RecordError(RejectReason.MISSING_FIELD, f"{name}: missing")
        if not isinstance(value, str) or not value:
            raise RecordError(RejectReason.WRONG_TYPE, f"{name}: a non-empty string expected")
        return value

    def optional_text(self, name: str) -> str | None:
        return None if self.wire.get(name) is None else self.text(name)

    def integer(self, name: str) -> int:
        value = self.wire.get(name)
        if value is None:
            raise RecordError(RejectReason.MISSING_FIELD, f"{name}: missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(RejectReason.WRONG_TYPE, f"{name}: an integer expected")
        return value

    def optional_integer(self, name: str) -> int | None:
        return None if self.wire.get(name) is None else self.integer(name)

    def time_ms(self, name: str) -> int:
        text = self.text(name)
        try:
            return parse_rfc3339_ms(text)
        except ValueError as exc:
            raise RecordError(RejectReason.BAD_FORMAT, f"{name}: {exc}") from None

    def member(self, name: str, enum: type[E]) -> E:
        text = self.text(name)
        try:
            return enum(text)
        except ValueError:
            allowed = ", ".join(m.value for m in enum)
            raise RecordError(
                RejectReason.BAD_ENUM, f"{name}: {text!r} is not one of {allowed}"
            ) from None


def _alert(w: _Wire, body: str) -> AlertRow:
    return AlertRow(
        alert_id=w.text("alert_id"),
        rule_id=w.text("rule_id"),
        rule_version=w.integer("rule_version"),
        severity=w.member("severity", Severity).value,
        entity_type=w.member("entity_type", EntityType).value,
        entity_id=w.text("entity_id"),
        mode=w.member("mode", Mode).value,
        ruleset_version=w.optional_text("ruleset_version") or "",
        occurred_at_ms=w.time_ms("occurred_at"),
        detected_at_ms=w.time_ms("detected_at"),
        body=body,
    )


def _subject(w: _Wire, kind: FreezeKind) -> tuple[str, str]:
    if kind is FreezeKind.FUND:
        return EntityType.MERCHANT.value, w.text("merchant_id")
    return w.member("subject_type", EntityType).value, w.text("subject_id")


def _money(w: _Wire) -> tuple[int | None, str | None]:
    amount, currency = w.optional_integer("amount_minor"), w.optional_text("currency")
    if (amount is None) != (currency is None):
        raise RecordError(RejectReason.MISSING_FIELD, "amount_minor and currency go together")
    return amount, currency


def _freeze(w: _Wire, kind: FreezeKind, body: str) -> FreezeRow:
    subject_type, subject_id = _subject(w, kind)
    amount, currency = _money(w)
    return FreezeRow(
        freeze_id=w.text("freeze_id"),
        kind=kind,
        subject_type=subject_type,
        subject_id=subject_id,
        scope=w.text("scope"),
        rule_id=w.text("rule_id"),
        reason_alert_id=w.text("reason_alert_id"),
        ruleset_version=w.optional_text("ruleset_version") or "",
        issued_at_ms=w.time_ms("issued_at"),
        expires_at_ms=w.time_ms("expires_at"),
        amount_minor=amount,
        currency=currency,
        body=body,
    )


def _release(w: _Wire, kind: FreezeKind, body: str) -> ReleaseRow:
    return ReleaseRow(
        release_id=w.text("release_id"),
        freeze_id=w.text("releases_freeze_id"),
        kind=kind,
        release_type=w.member("release_type", ReleaseType).value,
        reason_code=w.text("reason_code"),
        actor=w.text("actor"),
        reason=w.text("reason"),
        control_id=w.optional_text("control_id"),
        rule_id=w.text("rule_id"),
        issued_at_ms=w.time_ms("issued_at"),
        body=body,
    )


def _control(
    key: bytes | None, wire: dict[str, Any], body: str, position: Position
) -> tuple[Row, ...]:
    """The control record, and its audit entry: whoever published it (the
    CLI, the console, the breaker), it is an operator action."""
    if key is None:
        raise RecordError(RejectReason.BAD_CONTROL, "a control record needs a key")
    try:
        record = parse_control(key, wire)
    except ControlRecordError as exc:
        raise RecordError(RejectReason.BAD_CONTROL, str(exc)) from None
    meta, kind = record.meta, record.kind.value
    row = ControlRow(
        control_id=meta.control_id,
        kind=kind,
        record_key=record.key(),
        actor=meta.actor,
        reason=meta.reason,
        issued_at_ms=meta.issued_at_ms,
        partition=position.partition,
        offset=position.offset,
        body=body,
    )
    audit = AuditRow(
        idempotency_key=f"control:{meta.control_id}",
        at_ms=meta.issued_at_ms,
        actor=meta.actor,
        action=f"control.{kind}",
        reason=meta.reason,
        target_type=kind,
        target_id=record.key(),
        payload=body,
    )
    return (row, audit)


def _verdict(value: bytes, body: str) -> tuple[Row, ...]:
    """The verdict, and its audit entry: an analyst's decision on record."""
    try:
        v = parse_verdict(value)
    except ContractViolation as exc:
        raise RecordError(RejectReason.BAD_VERDICT, f"{exc.kind}: {exc}") from None
    row = VerdictRow(
        verdict_id=v.verdict_id,
        alert_id=v.alert_id,
        verdict=v.verdict.value,
        rule_id=v.rule_id,
        note=v.note,
        actor=v.actor,
        decided_at_ms=v.decided_at_ms,
        body=body,
    )
    audit = AuditRow(
        idempotency_key=f"verdict:{v.verdict_id}",
        at_ms=v.decided_at_ms,
        actor=v.actor,
        action=f"verdict.{v.verdict.value}",
        reason=v.note,
        target_type="alert",
        target_id=v.alert_id,
        payload=body,
    )
    return (row, audit)
