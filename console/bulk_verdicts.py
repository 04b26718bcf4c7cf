"""Bulk verdicts from the queue: the alerts an analyst ticked, one verdict
kind and one note, published as one `Verdict` per alert on `risk-verdicts`
(console.verdict_pages.verdict_on builds each, as the detail page's form
does), never written to the database here.

Each verdict's id is derived from the form's token and its alert, so a form
sent again after a timeout republishes the same verdicts: the ones that
went out the first time are not doubled. At most BULK_CAP alerts per
submit, so one click cannot flood the topic (more are refused, not cut).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web
from aiokafka.errors import KafkaError
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from console.queries import AlertDetail
from console.render import render
from console.request_state import CONN, USER
from console.users import Role
from console.verdict_pages import verdict_on
from console.web_auth import PAGES, requires, see_other
from detectors.verdicts import MAX_NOTE, VerdictKind

__all__ = ["BULK_CAP", "BulkError", "add_bulk_routes", "chosen_alerts", "indexed_alerts"]

BULK_CAP = 100
MAX_ALERT_ID = 200  # as the queue's page position (console.filters)


class BulkError(ValueError):
    pass


def chosen_alerts(values: Sequence[Any]) -> tuple[str, ...]:
    """The distinct alert ids ticked, in order; BulkError for none, too many
    or one that is no alert id of this console."""
    if not all(isinstance(v, str) for v in values):
        raise BulkError("An alert id is not text.")
    ids = tuple(dict.fromkeys(values))
    if not ids:
        raise BulkError("Tick at least one alert.")
    if len(ids) > BULK_CAP:
        raise BulkError(f"At most {BULK_CAP} alerts at once ({len(ids)} ticked).")
    if any(not i or len(i) > MAX_ALERT_ID for i in ids):
        raise BulkError("An alert id is not one this console shows.")
    return ids


async def indexed_alerts(conn: AsyncConnection[Any], ids: Sequence[str]) -> list[AlertDetail]:
    """The alerts of `ids` the index has (by primary key)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT alert_id, rule_id, severity, entity_type, entity_id, occurred_at,"
            " body::text AS body FROM alerts WHERE alert_id = ANY(%s) ORDER BY alert_id",
            (list(ids),),
        )
        rows = await cur.fetchall()
    found = []
    for row in rows:
        body = orjson.loads(row.pop("body"))
        found.append(AlertDetail(row, body if isinstance(body, dict) else {}))
    return found


def _form_error(kind: Any, note: Any, token: Any) -> str | None:
    if kind not in [k.value for k in VerdictKind] or not isinstance(note, str):
        return "Choose a verdict."
    if len(note) > MAX_NOTE:
        return "The note is too long."
    if not isinstance(token, str) or not token:
        return "Reload the page and retry."
    return None


@requires(Role.ANALYST)
async def bulk_verdict(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    kind, note, token = form.get("verdict"), form.get("note", ""), form.get("form_token")
    problem = _form_error(kind, note, token)
    try:
        ids = chosen_alerts(form.getall("alert_id", []))
    except BulkError as exc:
        problem = problem or str(exc)
    if problem is not None:
        return render(request, "error.html", status=400, message=problem)
    user = request[USER]
    assert user is not None  # `requires` let the request through
    found = await indexed_alerts(request[CONN], ids)
    verdicts = [
        verdict_on(a, VerdictKind(str(kind)), str(note), user.username, str(token)) for a in found
    ]
    publish = request.app[PAGES].publish_verdict
    sent = 0
    try:
        for verdict in verdicts:
            await publish(verdict)
            sent += 1
    except (KafkaError, TimeoutError) as exc:
        message = (
            f"{sent} of {len(verdicts)} verdicts were sent ({type(exc).__name__}); send the"
            " form again: the ones already sent are not doubled."
        )
        return render(request, "error.html", status=503, message=message)
    return see_other(f"/?bulk={sent}&missing={len(ids) - sent}")


def add_bulk_routes(app: web.Application) -> None:
    app.router.add_post("/alerts/bulk-verdict", bulk_verdict)
