"""Requests waiting for a second person, in Postgres (`approval_requests`,
migration 0004): made, listed, approved (the kept record is published, then
the request is marked approved) or rejected. Every step writes its audit
row in the same transaction as the request's change.

The request id is the control id of the record it holds (derived from the
form's token, console.action_forms): a request sent twice is one request,
and an approval retried after a failure publishes the same record id.
Approving locks the request row while the record is published: two
approvers clicking at once publish once, and a publish that fails leaves
the request pending (nothing recorded).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.errors import UniqueViolation
from psycopg.rows import dict_row

from console.index_store import timestamp, write_rows
from console.rows import AuditRow
from console.two_person import ApprovalKind, refusal_to_approve
from console.users import User
from detectors.control import ControlRecord, ControlRecordError
from detectors.control_parsing import parse_control
from detectors.timestamps import format_rfc3339_ms

__all__ = [
    "ApprovalError",
    "ApprovalRequest",
    "Decision",
    "approval_requests",
    "decide",
    "kept_record",
    "request_approval",
    "restamped",
]

Publish = Callable[[ControlRecord], Awaitable[None]]
_COLUMNS = (
    "request_id, kind, target, summary, requested_by, requested_at, reason, state,"
    " decided_by, decided_at, decision_reason"
)


class ApprovalError(Exception):
    """A decision that cannot be made: `status` is the page's HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    kind: ApprovalKind
    record: ControlRecord
    summary: str  # what the approvers see besides the record: value, subject

    @property
    def request_id(self) -> str:
        return self.record.meta.control_id

    @property
    def target(self) -> str:
        return self.record.key()


@dataclass(frozen=True, slots=True)
class Decision:
    request_id: str
    approve: bool
    reason: str


def _audit(
    action: str, actor: str, at_ms: int, reason: str, kind: str, target: str, **payload: Any
) -> AuditRow:
    """Targeted at the record's key, as the record's own audit entry is, so
    filtering the audit log by target shows request, decision and record."""
    return AuditRow(
        idempotency_key=f"{action}:{payload['request_id']}",
        at_ms=at_ms,
        actor=actor,
        action=action,
        reason=reason,
        target_type=kind,
        target_id=target,
        payload=orjson.dumps(payload).decode(),
    )


async def request_approval(conn: AsyncConnection[Any], req: ApprovalRequest) -> bool:
    """Keep the request (False: a request with its id exists already).
    ApprovalError (409): another release of the same freeze is pending."""
    try:
        return await _insert_request(conn, req)
    except UniqueViolation:
        raise ApprovalError(
            409, "A release of this freeze waits for a second person already (see Approvals)."
        ) from None


async def _insert_request(conn: AsyncConnection[Any], req: ApprovalRequest) -> bool:
    meta = req.record.meta
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "INSERT INTO approval_requests (request_id, kind, target, summary, requested_by,"
            " requested_at, reason, record) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
            " ON CONFLICT (request_id) DO NOTHING",
            (
                req.request_id,
                req.kind.value,
                req.target,
                req.summary,
                meta.actor,
                timestamp(meta.issued_at_ms),
                meta.reason,
                orjson.dumps(req.record.to_wire()).decode(),
            ),
        )
        made = cur.rowcount == 1
        if made:
            row = _audit(
                "approval.request",
                meta.actor,
                meta.issued_at_ms,
                meta.reason,
                req.kind.value,
                req.target,
                request_id=req.request_id,
                summary=req.summary,
            )
            await write_rows(conn, [row])
    return made


async def approval_requests(
    conn: AsyncConnection[Any], pending: bool, limit: int
) -> list[dict[str, Any]]:
    """Pending requests oldest first (the next to decide), or the decided
    ones newest first."""
    where = (
        "state = 'pending' ORDER BY requested_at"
        if pending
        else ("state <> 'pending' ORDER BY requested_at DESC")
    )
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT " + _COLUMNS + " FROM approval_requests WHERE " + where + " LIMIT %s",
            (limit,),
        )
        return list(await cur.fetchall())


def restamped(wire: dict[str, Any], now_ms: int) -> ControlRecord:
    """The kept record, issued now (when it takes effect), read again by the
    workers' parser."""
    return parse_control(None, {**wire, "issued_at": format_rfc3339_ms(now_ms)})


def kept_record(wire: dict[str, Any], now_ms: int) -> ControlRecord:
    """The record to publish on approval; ApprovalError (409) when this
    console's parser refuses what an older one kept."""
    try:
        return restamped(wire, now_ms)
    except ControlRecordError as exc:  # kept by an older console, refused by this one
        raise ApprovalError(409, f"The kept record is not valid now ({exc}); reject it.") from None


async def decide(
    conn: AsyncConnection[Any], decision: Decision, user: User, now_ms: int, publish: Publish
) -> dict[str, Any]:
    """Approve (publish, then mark) or reject a pending request; the row as
    it was. ApprovalError: unknown (404), decided already (409), the user's
    own or too small a role (403). A publish failure propagates and the
    request stays pending."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT " + _COLUMNS + ", record FROM approval_requests WHERE request_id = %s"
            " FOR UPDATE",
            (decision.request_id,),
        )
        row = await cur.fetchone()
        if row is None:
            raise ApprovalError(404, "No such request.")
        if row["state"] != "pending":
            raise ApprovalError(409, f"This request was {row['state']} by {row['decided_by']}.")
        refusal = refusal_to_approve(row["requested_by"], user)
        if refusal is not None:
            raise ApprovalError(403, refusal)
        if decision.approve:
            await publish(kept_record(row["record"], now_ms))
        state = "approved" if decision.approve else "rejected"
        await cur.execute(
            "UPDATE approval_requests SET state = %s, decided_by = %s, decided_at = %s,"
            " decision_reason = %s WHERE request_id = %s",
            (state, user.username, timestamp(now_ms), decision.reason, decision.request_id),
        )
        audit = _audit(
            f"approval.{'approve' if decision.approve else 'reject'}",
            user.username,
            now_ms,
            decision.reason,
            row["kind"],
            row["target"],
            request_id=decision.request_id,
            requested_by=row["requested_by"],
        )
        await write_rows(conn, [audit])
    return row
