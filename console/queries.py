"""The pages' reads from the index, each served by an index of the schema
(console/schema/0001_initial.sql):

- the queue reads `alerts_newest` (occurred_at DESC, alert_id DESC), or the
  filter's own index (rule, severity, entity type, mode or status, then
  occurred_at DESC), from the page's position: keyset paging, never OFFSET,
  so page 1,000 costs what page 1 costs;
- the count of alerts newer than a page stops at NEWER_CAP rows;
- an alert's entity reads `alerts_by_entity`, its freezes
  `freezes_by_subject` and `freezes_by_alert`.

Only column names written here reach the SQL; every value is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import orjson
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from console.filters import Assigned, Cursor, QueueFilter, epoch_ms
from console.index_store import timestamp

__all__ = [
    "NEWER_CAP",
    "AlertDetail",
    "QueueAlert",
    "QueuePage",
    "alert_detail",
    "count_newer",
    "entity_alerts",
    "entity_freezes",
    "queue_page",
    "verdicts_of",
]

NEWER_CAP = 1000
ENTITY_ROWS = 20


@dataclass(frozen=True, slots=True)
class QueueAlert:
    alert_id: str
    rule_id: str
    severity: str
    entity_type: str
    entity_id: str
    mode: str
    status: str
    occurred_at: datetime
    observed: Any
    threshold: Any
    assignee: str | None = None

    @property
    def cursor(self) -> Cursor:
        return Cursor(epoch_ms(self.occurred_at), self.alert_id)


@dataclass(frozen=True, slots=True)
class QueuePage:
    alerts: tuple[QueueAlert, ...]
    next_before: Cursor | None  # where the next page starts; None: this is the last

    @property
    def newest(self) -> Cursor | None:
        return self.alerts[0].cursor if self.alerts else None


@dataclass(frozen=True, slots=True)
class AlertDetail:
    row: dict[str, Any]
    body: dict[str, Any]


_QUEUE_COLUMNS: LiteralString = (
    "alert_id, rule_id, severity, entity_type, entity_id, mode, status, occurred_at,"
    " body->'observed' AS observed, body->'threshold' AS threshold, assignee"
)


def _conditions(f: QueueFilter, me: str = "") -> tuple[list[LiteralString], list[Any]]:
    """The filter's WHERE terms (fixed text) and their parameters; `me`:
    the viewer, for the "assigned to me" filter."""
    terms: list[LiteralString] = []
    params: list[Any] = []
    for column, value in (
        ("rule_id", f.rule),
        ("severity", f.severity),
        ("entity_type", f.entity_type),
        ("mode", f.mode),
        ("status", f.status),
    ):
        if value is not None:
            terms.append(column + " = %s")
            params.append(str(value))
    if f.since_ms is not None:
        terms.append("occurred_at >= %s")
        params.append(timestamp(f.since_ms))
    if f.until_ms is not None:
        terms.append("occurred_at < %s")
        params.append(timestamp(f.until_ms))
    if f.assigned is Assigned.ME:
        terms.append("assignee = %s")
        params.append(me)
    elif f.assigned is Assigned.NOBODY:
        terms.append("assignee IS NULL")
    return terms, params


def _where(terms: list[LiteralString]) -> LiteralString:
    return " WHERE " + " AND ".join(terms) if terms else ""


async def queue_page(
    conn: AsyncConnection[Any], f: QueueFilter, size: int, me: str = ""
) -> QueuePage:
    """Newest first by event time; `size` alerts from the filter's position."""
    terms, params = _conditions(f, me)
    if f.before is not None:
        # The first term lets the planner start the index scan at the
        # position; the second breaks ties between alerts of the same time.
        terms += ["occurred_at <= %s", "(occurred_at, alert_id) < (%s, %s)"]
        at = timestamp(f.before.occurred_at_ms)
        params += [at, at, f.before.alert_id]
    sql: LiteralString = (
        "SELECT " + _QUEUE_COLUMNS + " FROM alerts" + _where(terms)
        + " ORDER BY occurred_at DESC, alert_id DESC LIMIT %s"
    )  # fmt: skip
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, [*params, size + 1])
        rows = await cur.fetchall()
    alerts = tuple(QueueAlert(**r) for r in rows[:size])
    more = len(rows) > size
    return QueuePage(alerts, alerts[-1].cursor if more and alerts else None)


async def count_newer(
    conn: AsyncConnection[Any], f: QueueFilter, newest: Cursor, me: str = ""
) -> int:
    """Alerts of the filter above `newest` (at most NEWER_CAP)."""
    terms, params = _conditions(f, me)
    at = timestamp(newest.occurred_at_ms)
    terms += ["occurred_at >= %s", "(occurred_at, alert_id) > (%s, %s)"]
    params += [at, at, newest.alert_id]
    sql: LiteralString = (
        "SELECT count(*) FROM (SELECT 1 FROM alerts" + _where(terms) + " LIMIT %s) AS newer"
    )
    cur = await conn.execute(sql, [*params, NEWER_CAP])
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def alert_detail(conn: AsyncConnection[Any], alert_id: str) -> AlertDetail | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT alert_id, rule_id, rule_version, severity, entity_type, entity_id, mode,"
            " ruleset_version, occurred_at, detected_at, status, assignee, verdict, body::text"
            " AS body FROM alerts WHERE alert_id = %s",
            (alert_id,),
        )
        row = await cur.fetchone()
    if row is None:
        return None
    body = orjson.loads(row.pop("body"))
    return AlertDetail(row, body if isinstance(body, dict) else {})


async def entity_alerts(
    conn: AsyncConnection[Any], entity_type: str, entity_id: str, but: str, limit: int = ENTITY_ROWS
) -> list[QueueAlert]:
    """The entity's newest alerts but `but`."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT " + _QUEUE_COLUMNS + " FROM alerts WHERE entity_type = %s AND entity_id = %s"
            " AND alert_id <> %s ORDER BY occurred_at DESC, alert_id DESC LIMIT %s",
            (entity_type, entity_id, but, limit),
        )
        return [QueueAlert(**r) for r in await cur.fetchall()]


async def entity_freezes(
    conn: AsyncConnection[Any], entity_type: str, entity_id: str, alert_id: str
) -> list[dict[str, Any]]:
    """The entity's newest freezes, and any freeze the alert raised, each
    with its release when it was released (when, by whom, why)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT f.freeze_id, f.kind, f.subject_type, f.subject_id, f.scope, f.rule_id,"
            " f.reason_alert_id, f.issued_at, f.expires_at, f.amount_minor, f.currency, f.state,"
            " r.issued_at AS released_at, r.actor AS released_by, r.release_type,"
            " r.reason_code, r.reason AS release_reason"
            " FROM freezes f LEFT JOIN freeze_releases r ON r.release_id = f.release_id"
            " WHERE (f.subject_type = %s AND f.subject_id = %s) OR f.reason_alert_id = %s"
            " ORDER BY f.issued_at DESC LIMIT %s",
            (entity_type, entity_id, alert_id, ENTITY_ROWS),
        )
        return await cur.fetchall()


async def verdicts_of(conn: AsyncConnection[Any], alert_id: str) -> list[dict[str, Any]]:
    """An alert's verdicts, newest first (`verdicts_by_alert`): the first stands."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT verdict_id, verdict, note, actor, decided_at FROM verdicts"
            " WHERE alert_id = %s ORDER BY decided_at DESC, verdict_id DESC LIMIT %s",
            (alert_id, ENTITY_ROWS),
        )
        return list(await cur.fetchall())
