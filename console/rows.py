"""What the indexer writes: one frozen row type per table. Built from Kafka
records by `console.mapping` (pure) and written by `console.index_store`.
Times are epoch milliseconds; bodies are the record's JSON text, kept whole
for the pages (jsonb in Postgres)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AlertRow",
    "AuditRow",
    "ControlRow",
    "FreezeKind",
    "FreezeRow",
    "Position",
    "RejectReason",
    "RejectedRow",
    "ReleaseRow",
    "Row",
    "Source",
    "VerdictRow",
]


class Source(StrEnum):
    """The topics the indexer reads, by role (their names come from settings)."""

    ALERTS = "alerts"
    BENEFIT_FREEZES = "benefit_freezes"
    FUND_FREEZES = "fund_freezes"
    CONTROL = "control"
    VERDICTS = "verdicts"


class FreezeKind(StrEnum):
    BENEFIT = "benefit"
    FUND = "fund"


class RejectReason(StrEnum):
    """Why a record was not indexed (a metric label, the error_kind column)."""

    EMPTY_VALUE = "empty_value"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    BAD_FORMAT = "bad_format"
    BAD_ENUM = "bad_enum"
    NUL_CHARACTER = "nul_character"  # Postgres text and jsonb cannot hold U+0000
    BAD_CONTROL = "bad_control"
    BAD_VERDICT = "bad_verdict"
    STORAGE_ERROR = "storage_error"  # valid JSON the database refused


@dataclass(frozen=True, slots=True)
class Position:
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class AlertRow:
    alert_id: str
    rule_id: str
    rule_version: int
    severity: str
    entity_type: str
    entity_id: str
    mode: str
    ruleset_version: str
    occurred_at_ms: int
    detected_at_ms: int
    body: str


@dataclass(frozen=True, slots=True)
class FreezeRow:
    freeze_id: str
    kind: FreezeKind
    subject_type: str
    subject_id: str
    scope: str
    rule_id: str
    reason_alert_id: str
    ruleset_version: str
    issued_at_ms: int
    expires_at_ms: int
    amount_minor: int | None
    currency: str | None
    body: str


@dataclass(frozen=True, slots=True)
class ReleaseRow:
    release_id: str
    freeze_id: str
    kind: FreezeKind
    release_type: str
    reason_code: str
    actor: str
    reason: str
    control_id: str | None
    rule_id: str
    issued_at_ms: int
    body: str


@dataclass(frozen=True, slots=True)
class ControlRow:
    control_id: str
    kind: str
    record_key: str
    actor: str
    reason: str
    issued_at_ms: int
    partition: int
    offset: int
    body: str


@dataclass(frozen=True, slots=True)
class AuditRow:
    idempotency_key: str
    at_ms: int
    actor: str
    action: str
    reason: str
    target_type: str | None
    target_id: str | None
    payload: str


@dataclass(frozen=True, slots=True)
class VerdictRow:
    verdict_id: str
    alert_id: str
    verdict: str
    rule_id: str
    note: str
    actor: str
    decided_at_ms: int
    body: str


@dataclass(frozen=True, slots=True)
class RejectedRow:
    position: Position
    key: bytes | None
    value: bytes | None  # cut at VALUE_KEPT_BYTES
    value_size: int
    value_sha256: str
    value_truncated: bool
    reason: RejectReason
    message: str


Row = AlertRow | FreezeRow | ReleaseRow | ControlRow | AuditRow | VerdictRow | RejectedRow
