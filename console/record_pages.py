"""Two read-only pages over what happened: the audit log (`/audit`, every
operator action with actor, time, reason and target, newest first,
filterable by actor, action and target) and the active freezes
(`/freezes`, benefit or fund, by age or by value).

Each query is served by an index of the schema (audit_log_newest,
_by_actor, _by_action, _by_target; freezes_by_state, freezes_by_value) and
reads at most PAGE_ROWS rows; filters are parameters, never SQL.
"""

from __future__ import annotations

from typing import Any, LiteralString

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from console.release_pages import release_context
from console.render import render
from console.request_state import CONN
from console.users import Role
from console.web_auth import requires

__all__ = ["PAGE_ROWS", "active_freezes", "add_record_routes", "audit_entries"]

PAGE_ROWS = 200
_AUDIT_FILTERS: tuple[tuple[str, LiteralString], ...] = (
    ("actor", "actor = %s"),
    ("action", "action = %s"),
    ("target_type", "target_type = %s"),
    ("target_id", "target_id = %s"),
)
_FREEZE_ORDER: dict[str, LiteralString] = {
    "age": "issued_at ASC, freeze_id",
    "value": "currency NULLS LAST, amount_minor DESC NULLS LAST, freeze_id",
}


async def audit_entries(conn: AsyncConnection[Any], query: dict[str, str]) -> list[dict[str, Any]]:
    terms: list[LiteralString] = []
    values: list[Any] = []
    for name, sql in _AUDIT_FILTERS:
        if query.get(name):
            terms.append(sql)
            values.append(query[name])
    where: LiteralString = (" WHERE " + " AND ".join(terms)) if terms else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT at, actor, action, reason, target_type, target_id FROM audit_log"
            + where
            + " ORDER BY at DESC, audit_id DESC LIMIT %s",
            (*values, PAGE_ROWS),
        )
        return list(await cur.fetchall())


async def active_freezes(conn: AsyncConnection[Any], kind: str, order: str) -> list[dict[str, Any]]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT freeze_id, kind, subject_type, subject_id, scope, rule_id, reason_alert_id,"
            " issued_at, expires_at, amount_minor, currency, state FROM freezes"
            " WHERE state = 'active' AND kind = %s ORDER BY " + _FREEZE_ORDER[order] + " LIMIT %s",
            (kind, PAGE_ROWS),
        )
        return list(await cur.fetchall())


@requires(Role.VIEWER)
async def audit(request: web.Request) -> web.StreamResponse:
    query = {name: request.query.get(name, "") for name, _ in _AUDIT_FILTERS}
    rows = await audit_entries(request[CONN], query)
    return render(request, "audit.html", entries=rows, query=query, limit=PAGE_ROWS)


@requires(Role.VIEWER)
async def freezes(request: web.Request) -> web.StreamResponse:
    kind, order = request.query.get("kind", "fund"), request.query.get("order", "age")
    if kind not in ("benefit", "fund") or order not in _FREEZE_ORDER:
        return render(
            request, "error.html", status=400, message="kind: benefit or fund; order: age or value."
        )
    rows = await active_freezes(request[CONN], kind, order)
    return render(
        request,
        "freezes.html",
        freezes=rows,
        kind=kind,
        order=order,
        limit=PAGE_ROWS,
        released=request.query.get("released", ""),
        **release_context(request, rows),
    )


def add_record_routes(app: web.Application) -> None:
    app.router.add_get("/audit", audit)
    app.router.add_get("/freezes", freezes)
