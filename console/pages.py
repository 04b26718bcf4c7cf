"""The console's pages: the alert queue (`/`), the count of newer alerts
it polls (`/alerts/newer`, an htmx fragment), and an alert's detail
(`/alerts/{alert_id}`). Reads go through `console.queries`; every page
needs a login (viewer or above)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from console.filters import (
    AlertStatus,
    Assigned,
    Cursor,
    FilterError,
    QueueFilter,
    parse_filter,
)
from console.queries import (
    NEWER_CAP,
    alert_detail,
    count_newer,
    entity_alerts,
    entity_freezes,
    queue_page,
    verdicts_of,
)
from console.render import render
from console.request_state import CONN, USER
from console.users import Role
from console.verdict_pages import form_token
from console.web_auth import PAGES, requires
from detectors.rules import Mode, Severity
from detectors.rules_entities import EntityType
from detectors.verdicts import VerdictKind

__all__ = ["CHOICES", "PAGE_SIZE", "add_page_routes", "counted_of"]

PAGE_SIZE = 50
CHOICES = {
    "severity": [s.value for s in Severity],
    "entity_type": [e.value for e in EntityType],
    "mode": [m.value for m in Mode],
    "status": [s.value for s in AlertStatus],
    "assigned": [a.value for a in Assigned],
}


@requires(Role.VIEWER)
async def queue(request: web.Request) -> web.StreamResponse:
    try:
        f = parse_filter(request.query)
    except FilterError as exc:
        return render(request, "error.html", status=400, message=str(exc))
    page = await queue_page(request[CONN], f, PAGE_SIZE, _me(request))
    return render(
        request,
        "queue.html",
        page=page,
        filter=f,
        params=f.params(),
        choices=CHOICES,
        newer_query=_newer_query(f, page.newest),
        bulk=_may_judge(request),
        assign=_may_judge(request),
        me=_me(request),
        back=request.path_qs,
        form_token=form_token(),
        verdict_kinds=[k.value for k in VerdictKind],
        bulk_sent=_count(request.query.get("bulk", "")),
    )


def _count(raw: str) -> str:
    """A count the bulk verdict's redirect gave; anything else shows nothing."""
    return raw if raw.isdigit() and len(raw) <= 4 else ""


def _me(request: web.Request) -> str:
    user = request[USER]
    return user.username if user else ""


def _newer_query(f: QueueFilter, newest: Cursor | None) -> str:
    """The poll of the count of alerts above the page's newest."""
    return urlencode({**f.params(), "newest": newest.encode()}) if newest else ""


@requires(Role.VIEWER)
async def newer(request: web.Request) -> web.StreamResponse:
    try:
        f = parse_filter(request.query)
        newest = Cursor.decode(request.query.get("newest", ""))
    except FilterError as exc:
        return web.Response(status=400, text=str(exc))
    count = await count_newer(request[CONN], f, newest, _me(request))
    return render(request, "_newer.html", count=count, cap=NEWER_CAP, query=f.query())


@requires(Role.VIEWER)
async def detail(request: web.Request) -> web.StreamResponse:
    alert_id = request.match_info["alert_id"]
    conn = request[CONN]
    found = await alert_detail(conn, alert_id)
    if found is None:
        return render(request, "error.html", status=404, message="No such alert in the index.")
    row = found.row
    others = await entity_alerts(conn, row["entity_type"], row["entity_id"], alert_id)
    freezes = await entity_freezes(conn, row["entity_type"], row["entity_id"], alert_id)
    evidence = found.body.get("evidence")
    return render(
        request,
        "alert.html",
        alert=row,
        body=found.body,
        window=found.body.get("window") if isinstance(found.body.get("window"), dict) else {},
        evidence=evidence if isinstance(evidence, dict) else {},
        counted=counted_of(found.body),
        description=request.app[PAGES].rule_descriptions.get(row["rule_id"]),
        others=others,
        freezes=freezes,
        verdicts=await verdicts_of(conn, alert_id),
        verdict_kinds=[k.value for k in VerdictKind],
        form_token=form_token(),
        sent=request.query.get("sent", ""),
        can_judge=_may_judge(request),
        me=_me(request),
        back=request.path_qs,
    )


def counted_of(body: dict[str, Any]) -> list[str]:
    """The events the alert counted (`counted_event_ids`), as text; an
    alert from an older worker, or a malformed one, lists none."""
    ids = body.get("counted_event_ids")
    return [str(i) for i in ids] if isinstance(ids, list) else []


def _may_judge(request: web.Request) -> bool:
    user = request[USER]
    return user is not None and user.role.allows(Role.ANALYST)


def add_page_routes(app: web.Application) -> None:
    app.router.add_get("/", queue)
    app.router.add_get("/alerts/newer", newer)
    app.router.add_get("/alerts/{alert_id}", detail)
