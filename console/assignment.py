"""Case assignment: an analyst takes an alert ("assign to me") or gives it
back ("unassign"), from the queue or the alert's page. Assignment is the
console's own case state (the alerts table's `assignee` and `status`
columns, which the indexer never writes), changed in Postgres together
with its audit row, in one transaction.

Who may do what (`decide`, pure): an analyst takes an unassigned alert and
gives back their own; an approver or admin may also take or give back
someone else's. A closed alert keeps its case. Taking what one holds, or
giving back what nobody holds, changes nothing and leaves no audit row.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web
from psycopg import AsyncConnection

from console.filters import AlertStatus
from console.index_store import write_rows
from console.render import render
from console.request_state import CONN, USER
from console.rows import AuditRow
from console.users import Role
from console.web_auth import local_target, requires, see_other

__all__ = ["CaseAction", "Change", "Refusal", "add_assignment_routes", "change_case", "decide"]

SAFE_URL = "/?&=%:+,;~-_."
MAX_NEXT = 2000


class CaseAction(StrEnum):
    """An assignment change, as its audit action."""

    ASSIGN = "case.assign"
    UNASSIGN = "case.unassign"


@dataclass(frozen=True, slots=True)
class Change:
    assignee: str | None
    status: AlertStatus


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str


def decide(
    action: CaseAction, status: str, current: str | None, actor: str, may_override: bool
) -> Change | Refusal | None:
    """The case after `actor` does `action`; None: nothing to change."""
    if status == AlertStatus.CLOSED:
        return Refusal(409, "The alert is closed.")
    if action is CaseAction.ASSIGN:
        if current == actor:
            return None
        if current is not None and not may_override:
            return Refusal(409, "The alert is assigned to someone else.")
        return Change(actor, AlertStatus.ASSIGNED)
    if current is None:
        return None
    if current != actor and not may_override:
        return Refusal(403, "Only its assignee or an approver may unassign this alert.")
    return Change(None, AlertStatus.NEW)


async def change_case(
    conn: AsyncConnection[Any], alert_id: str, action: CaseAction, actor: str, may_override: bool
) -> Change | Refusal | None:
    """Applies `decide` to the alert's current case, under a row lock."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "SELECT status, assignee FROM alerts WHERE alert_id = %s FOR UPDATE", (alert_id,)
        )
        row = await cur.fetchone()
        if row is None:
            return Refusal(404, "No such alert in the index.")
        outcome = decide(action, row[0], row[1], actor, may_override)
        if not isinstance(outcome, Change):
            return outcome
        await cur.execute(
            "UPDATE alerts SET assignee = %s, status = %s WHERE alert_id = %s",
            (outcome.assignee, outcome.status.value, alert_id),
        )
        payload = {"before": row[1], "after": outcome.assignee}
        audit = AuditRow(
            idempotency_key=f"console:{uuid.uuid4()}",
            at_ms=int(time.time() * 1000),
            actor=actor,
            action=action.value,
            reason="",
            target_type="alert",
            target_id=alert_id,
            payload=orjson.dumps(payload).decode(),
        )
        await write_rows(conn, [audit])
        return outcome


async def _act(request: web.Request, action: CaseAction) -> web.StreamResponse:
    alert_id = request.match_info["alert_id"]
    back = (await request.post()).get("next")
    if isinstance(back, str) and len(back) > MAX_NEXT:
        return render(request, "error.html", status=400, message="The return address is too long.")
    user = request[USER]
    assert user is not None  # `requires` let the request through
    may_override = user.role.allows(Role.APPROVER)
    outcome = await change_case(request[CONN], alert_id, action, user.username, may_override)
    if isinstance(outcome, Refusal):
        return render(request, "error.html", status=outcome.status, message=outcome.message)
    target = local_target(back if isinstance(back, str) else None)
    return see_other(quote(target, safe=SAFE_URL))


@requires(Role.ANALYST)
async def assign(request: web.Request) -> web.StreamResponse:
    return await _act(request, CaseAction.ASSIGN)


@requires(Role.ANALYST)
async def unassign(request: web.Request) -> web.StreamResponse:
    return await _act(request, CaseAction.UNASSIGN)


def add_assignment_routes(app: web.Application) -> None:
    app.router.add_post("/alerts/{alert_id}/assign", assign)
    app.router.add_post("/alerts/{alert_id}/unassign", unassign)
