"""Writing rows to Postgres, idempotently, and purging old ones.

Every insert is keyed by the record's own id (`alert_id`, `freeze_id`,
`release_id`, `control_id`, the audit entry's idempotency key, a rejected
record's topic/partition/offset) and does nothing on conflict, so a
redelivered or replayed record changes nothing; the columns the console
owns (an alert's status, assignee, verdict) are never touched. A freeze is
marked released by its earliest release, whichever of the two was indexed
first, so any delivery order gives the same tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

from psycopg import AsyncConnection

from console.rows import (
    AlertRow,
    AuditRow,
    ControlRow,
    FreezeRow,
    RejectedRow,
    ReleaseRow,
    Row,
    VerdictRow,
)

__all__ = ["PURGE_BATCH", "PurgeCounts", "purge", "timestamp", "write_rows"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PURGE_BATCH = 5000


def timestamp(ms: int) -> datetime:
    """Exact to the millisecond (no float on the way)."""
    return EPOCH + timedelta(milliseconds=ms)


_ALERT = """
INSERT INTO alerts (alert_id, rule_id, rule_version, severity, entity_type, entity_id, mode,
                    ruleset_version, occurred_at, detected_at, body)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (alert_id) DO NOTHING"""

_FREEZE = """
INSERT INTO freezes (freeze_id, kind, subject_type, subject_id, scope, rule_id, reason_alert_id,
                     ruleset_version, issued_at, expires_at, amount_minor, currency, body)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (freeze_id) DO NOTHING"""

_RELEASE = """
INSERT INTO freeze_releases (release_id, freeze_id, kind, release_type, reason_code, actor,
                             reason, control_id, rule_id, issued_at, body)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (release_id) DO NOTHING"""

_MARK_RELEASED = """
UPDATE freezes f SET state = 'released', release_id = (
    SELECT r.release_id FROM freeze_releases r WHERE r.freeze_id = f.freeze_id
    ORDER BY r.issued_at, r.release_id LIMIT 1)
WHERE f.freeze_id = ANY(%s) AND f.state = 'active'
  AND EXISTS (SELECT 1 FROM freeze_releases r WHERE r.freeze_id = f.freeze_id)"""

_CONTROL = """
INSERT INTO control_records (control_id, kind, record_key, actor, reason, issued_at,
                             kafka_partition, kafka_offset, body)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (control_id) DO NOTHING"""

_AUDIT = """
INSERT INTO audit_log (idempotency_key, at, actor, action, reason, target_type, target_id,
                       payload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (idempotency_key) DO NOTHING"""

_VERDICT = """
INSERT INTO verdicts (verdict_id, alert_id, verdict, note, actor, decided_at, rule_id, body)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)
ON CONFLICT (verdict_id) DO NOTHING"""

_REJECTED = """
INSERT INTO rejected_records (topic, kafka_partition, kafka_offset, kafka_key, value, value_size,
                              value_sha256, value_truncated, error_kind, error_message)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (topic, kafka_partition, kafka_offset) DO NOTHING"""


def _alert(r: AlertRow) -> tuple[Any, ...]:
    return (
        r.alert_id,
        r.rule_id,
        r.rule_version,
        r.severity,
        r.entity_type,
        r.entity_id,
        r.mode,
        r.ruleset_version,
        timestamp(r.occurred_at_ms),
        timestamp(r.detected_at_ms),
        r.body,
    )


def _freeze(r: FreezeRow) -> tuple[Any, ...]:
    return (
        r.freeze_id,
        r.kind.value,
        r.subject_type,
        r.subject_id,
        r.scope,
        r.rule_id,
        r.reason_alert_id,
        r.ruleset_version,
        timestamp(r.issued_at_ms),
        timestamp(r.expires_at_ms),
        r.amount_minor,
        r.currency,
        r.body,
    )


def _release(r: ReleaseRow) -> tuple[Any, ...]:
    return (
        r.release_id,
        r.freeze_id,
        r.kind.value,
        r.release_type,
        r.reason_code,
        r.actor,
        r.reason,
        r.control_id,
        r.rule_id,
        timestamp(r.issued_at_ms),
        r.body,
    )


def _control(r: ControlRow) -> tuple[Any, ...]:
    return (
        r.control_id,
        r.kind,
        r.record_key,
        r.actor,
        r.reason,
        timestamp(r.issued_at_ms),
        r.partition,
        r.offset,
        r.body,
    )


def _audit(r: AuditRow) -> tuple[Any, ...]:
    return (
        r.idempotency_key,
        timestamp(r.at_ms),
        r.actor,
        r.action,
        r.reason,
        r.target_type,
        r.target_id,
        r.payload,
    )


def _rejected(r: RejectedRow) -> tuple[Any, ...]:
    p = r.position
    return (
        p.topic,
        p.partition,
        p.offset,
        r.key,
        r.value,
        r.value_size,
        r.value_sha256,
        r.value_truncated,
        r.reason.value,
        r.message,
    )


def _verdict(r: VerdictRow) -> tuple[Any, ...]:
    return (
        r.verdict_id,
        r.alert_id,
        r.verdict,
        r.note,
        r.actor,
        timestamp(r.decided_at_ms),
        r.rule_id,
        r.body,
    )


async def write_rows(conn: AsyncConnection[Any], rows: Sequence[Row]) -> None:
    """Insert `rows` in the caller's transaction (one statement per table)."""
    plan: list[tuple[LiteralString, list[tuple[Any, ...]]]] = [
        (_ALERT, [_alert(r) for r in rows if isinstance(r, AlertRow)]),
        (_FREEZE, [_freeze(r) for r in rows if isinstance(r, FreezeRow)]),
        (_RELEASE, [_release(r) for r in rows if isinstance(r, ReleaseRow)]),
        (_CONTROL, [_control(r) for r in rows if isinstance(r, ControlRow)]),
        (_AUDIT, [_audit(r) for r in rows if isinstance(r, AuditRow)]),
        (_VERDICT, [_verdict(r) for r in rows if isinstance(r, VerdictRow)]),
        (_REJECTED, [_rejected(r) for r in rows if isinstance(r, RejectedRow)]),
    ]
    async with conn.cursor() as cur:
        for sql, params in plan:
            if params:
                await cur.executemany(sql, params)
        touched = sorted(
            {r.freeze_id for r in rows if isinstance(r, FreezeRow | ReleaseRow)},
        )
        if touched:
            await cur.execute(_MARK_RELEASED, (touched,))


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    table: str
    rows: int


# Each: the table, and a query for up to PURGE_BATCH of its keys older than
# the cutoff (%s). Freezes still in force, and the newest control record of
# each key (the current state of a list entry, a snooze, a mode), stay.
_PURGES: tuple[tuple[str, LiteralString], ...] = (
    (
        "alerts",
        "DELETE FROM alerts WHERE alert_id IN (SELECT alert_id FROM alerts"
        " WHERE occurred_at < %(cutoff)s LIMIT %(batch)s)",
    ),
    (
        "freezes",
        "DELETE FROM freezes WHERE freeze_id IN (SELECT freeze_id FROM freezes"
        " WHERE issued_at < %(cutoff)s AND (state = 'released' OR expires_at < %(cutoff)s)"
        " LIMIT %(batch)s)",
    ),
    (
        "freeze_releases",
        "DELETE FROM freeze_releases WHERE release_id IN (SELECT r.release_id"
        " FROM freeze_releases r WHERE r.issued_at < %(cutoff)s AND NOT EXISTS"
        " (SELECT 1 FROM freezes f WHERE f.freeze_id = r.freeze_id) LIMIT %(batch)s)",
    ),
    (
        "control_records",
        "DELETE FROM control_records WHERE control_id IN (SELECT c.control_id"
        " FROM control_records c WHERE c.issued_at < %(cutoff)s AND EXISTS"
        " (SELECT 1 FROM control_records n WHERE n.record_key = c.record_key"
        " AND n.kafka_partition = c.kafka_partition AND n.kafka_offset > c.kafka_offset)"
        " LIMIT %(batch)s)",
    ),
    (
        "verdicts",
        "DELETE FROM verdicts WHERE verdict_id IN (SELECT verdict_id FROM verdicts"
        " WHERE decided_at < %(cutoff)s LIMIT %(batch)s)",
    ),
    (
        "audit_log",
        "DELETE FROM audit_log WHERE audit_id IN (SELECT audit_id FROM audit_log"
        " WHERE at < %(cutoff)s LIMIT %(batch)s)",
    ),
    (
        "rejected_records",
        "DELETE FROM rejected_records WHERE (topic, kafka_partition, kafka_offset) IN"
        " (SELECT topic, kafka_partition, kafka_offset FROM rejected_records"
        " WHERE received_at < %(cutoff)s LIMIT %(batch)s)",
    ),
)


async def purge(
    conn: AsyncConnection[Any], cutoff_ms: int, batch: int = PURGE_BATCH
) -> list[PurgeCounts]:
    """Delete rows older than `cutoff_ms`, `batch` rows per transaction, so
    a purge never holds long locks against the indexer and the pages."""
    params = {"cutoff": timestamp(cutoff_ms), "batch": batch}
    counts = []
    for table, sql in _PURGES:
        total = 0
        while True:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(sql, params)
                deleted = cur.rowcount
            total += deleted
            if deleted < batch:
                break
        counts.append(PurgeCounts(table, total))
    return counts
