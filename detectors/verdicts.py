"""An analyst's verdict on an alert: the `risk-verdicts` record.

The console publishes one per decision (true positive, false positive,
unsure); the workers read them to count confirmed violations against a
merchant's health (stream.verdicts), and `fraudstream score` can read them
as labels. A verdict carries what its consumers need of the alert (rule,
severity, entity, the merchant it names, its event time), so no consumer
has to find the alert again: the console has it at hand when the analyst
decides.

The latest verdict on an alert is the one that stands: a true positive
later judged unsure or a false positive no longer counts. `verdict_id` is
the console's idempotency key made an id, so a retried publish is the same
record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import orjson

from detectors.errors import ContractViolation
from detectors.rules import Severity
from detectors.rules_entities import EntityType
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms

__all__ = [
    "MAX_NOTE",
    "SCHEMA_VERSION",
    "Verdict",
    "VerdictKind",
    "parse_verdict",
    "verdict_id_for",
]

SCHEMA_VERSION = 1
MAX_NOTE = 2000  # characters: a note, not a report
_MAX_ID = 128
_ALERT_ID = re.compile(r"al_[0-9a-f]{32}")
_VERDICT_ID = re.compile(r"vd_[0-9a-f]{32}")
E = TypeVar("E", bound=StrEnum)


class VerdictKind(StrEnum):
    TRUE_POSITIVE = "true_positive"
    FALSE_POSITIVE = "false_positive"
    UNSURE = "unsure"


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict_id: str
    alert_id: str
    verdict: VerdictKind
    rule_id: str
    severity: Severity
    entity_type: EntityType
    entity_id: str
    merchant_id: str | None  # the merchant the alert names (its entity or compound key)
    alert_occurred_at_ms: int  # the alert's event time
    actor: str
    decided_at_ms: int
    note: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "verdict_id": self.verdict_id,
            "alert_id": self.alert_id,
            "verdict": self.verdict.value,
            "rule_id": self.rule_id,
            "severity": self.severity.value,
            "entity_type": self.entity_type.value,
            "entity_id": self.entity_id,
            "merchant_id": self.merchant_id,
            "alert_occurred_at": format_rfc3339_ms(self.alert_occurred_at_ms),
            "actor": self.actor,
            "decided_at": format_rfc3339_ms(self.decided_at_ms),
            "note": self.note,
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_wire())


def verdict_id_for(idempotency_key: str) -> str:
    """The verdict id of a decision: the same key (a retried click, a
    republished record) gives the same id."""
    return "vd_" + hashlib.blake2b(idempotency_key.encode(), digest_size=16).hexdigest()


def parse_verdict(value: bytes | str) -> Verdict:
    """A `risk-verdicts` record, or ContractViolation naming the field at
    fault, with the dead-letter topic's error kinds (invalid_json,
    not_an_object, missing_field, wrong_type, bad_enum, bad_format,
    out_of_range, bad_time, unknown_field)."""
    wire = _object(value)
    f = _Reader(wire)
    if wire.get("schema_version") != SCHEMA_VERSION:
        raise ContractViolation("bad_enum", f"expected {SCHEMA_VERSION}", "schema_version")
    verdict = Verdict(
        verdict_id=f.pattern("verdict_id", _VERDICT_ID),
        alert_id=f.pattern("alert_id", _ALERT_ID),
        verdict=f.enum("verdict", VerdictKind),
        rule_id=f.text("rule_id"),
        severity=f.enum("severity", Severity),
        entity_type=f.enum("entity_type", EntityType),
        entity_id=f.text("entity_id"),
        merchant_id=f.maybe_text("merchant_id") or None,
        alert_occurred_at_ms=f.time("alert_occurred_at"),
        actor=f.text("actor"),
        decided_at_ms=f.time("decided_at"),
        note=f.maybe_text("note", MAX_NOTE) or "",
    )
    f.done()
    return verdict


def _object(value: bytes | str) -> dict[str, Any]:
    try:
        wire = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ContractViolation("invalid_json", f"not JSON: {exc}") from None
    if isinstance(wire, dict):
        return wire
    raise ContractViolation("not_an_object", "expected a JSON object")


class _Reader:
    """Reads the record's fields, remembering which it read so that an
    unknown one is refused (a misspelt field must not be ignored)."""

    def __init__(self, wire: Mapping[str, Any]) -> None:
        self._wire = wire
        self._read = {"schema_version"}

    def _get(self, name: str, optional: bool) -> Any:
        self._read.add(name)
        value = self._wire.get(name)
        if value is None and not optional:
            raise ContractViolation("missing_field", "required", name)
        return value

    def text(self, name: str, limit: int = _MAX_ID) -> str:
        value = self.maybe_text(name, limit)
        if value is None:
            raise ContractViolation("missing_field", "required", name)
        if not value:
            raise ContractViolation("bad_format", "empty", name)
        return value

    def maybe_text(self, name: str, limit: int = _MAX_ID) -> str | None:
        value = self._get(name, optional=True)
        if value is None:
            return None
        if not isinstance(value, str):
            raise ContractViolation("wrong_type", "expected a string", name)
        if len(value) > limit:
            raise ContractViolation("out_of_range", f"longer than {limit} characters", name)
        return value

    def pattern(self, name: str, pattern: re.Pattern[str]) -> str:
        value = self.text(name)
        if not pattern.fullmatch(value):
            raise ContractViolation("bad_format", f"expected {pattern.pattern}", name)
        return value

    def enum(self, name: str, enum: type[E]) -> E:
        value = self._get(name, False)
        try:
            return enum(value)
        except ValueError:
            known = ", ".join(e.value for e in enum)
            raise ContractViolation("bad_enum", f"expected one of {known}", name) from None

    def time(self, name: str) -> int:
        value = self.text(name)
        try:
            return parse_rfc3339_ms(value)
        except ValueError as exc:
            raise ContractViolation("bad_time", str(exc), name) from None

    def done(self) -> None:
        unknown = sorted(set(self._wire) - self._read)
        if unknown:
            raise ContractViolation("unknown_field", "not in the contract", unknown[0])
