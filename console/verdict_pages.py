"""An analyst's verdict on an alert, from its detail page: published on
`risk-verdicts` (detectors.verdicts), never written to the database here.
The console's indexer reads it back like any verdict (with its audit
entry), and the workers count a true positive against the merchant's
health: the console acts only through the topics the workers read.

The form carries a token of its own, made when the page is rendered: the
verdict id is derived from it, so a form sent twice (a double click, a
retry after a timeout) is one verdict, published twice with the same id.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from console.queries import AlertDetail, alert_detail
from console.render import render
from console.request_state import CONN, USER
from console.sessions import new_token
from console.users import Role
from console.web_auth import PAGES, requires, see_other
from detectors.rules import Severity
from detectors.rules_entities import EntityType
from detectors.verdicts import MAX_NOTE, Verdict, VerdictKind, verdict_id_for

__all__ = ["add_verdict_routes", "form_token", "merchant_of", "verdict_on"]


def form_token() -> str:
    """The verdict form's own token (see the module doc)."""
    return new_token()


def merchant_of(row: Mapping[str, Any], body: Mapping[str, Any]) -> str | None:
    """The merchant an alert names: its entity, or its compound key's."""
    if row["entity_type"] == EntityType.MERCHANT.value:
        return str(row["entity_id"])
    key = body.get("evidence", {}).get("key") if isinstance(body.get("evidence"), dict) else None
    merchant = key.get(EntityType.MERCHANT.value) if isinstance(key, dict) else None
    return merchant if isinstance(merchant, str) and merchant else None


def _epoch_ms(value: Any) -> int:
    return int(value.timestamp() * 1000)


def verdict_on(found: AlertDetail, kind: VerdictKind, note: str, actor: str, token: str) -> Verdict:
    """`actor`'s verdict on an indexed alert, its id derived from the
    form's token and the alert (see the module doc)."""
    row = found.row
    alert_id = str(row["alert_id"])
    return Verdict(
        verdict_id=verdict_id_for(f"console:{actor}:{alert_id}:{token}"),
        alert_id=alert_id,
        verdict=kind,
        rule_id=row["rule_id"],
        severity=Severity(row["severity"]),
        entity_type=EntityType(row["entity_type"]),
        entity_id=row["entity_id"],
        merchant_id=merchant_of(row, found.body),
        alert_occurred_at_ms=_epoch_ms(row["occurred_at"]),
        actor=actor,
        decided_at_ms=int(time.time() * 1000),
        note=note,
    )


@requires(Role.ANALYST)
async def post_verdict(request: web.Request) -> web.StreamResponse:
    alert_id = request.match_info["alert_id"]
    form = await request.post()
    kind, note, token = form.get("verdict"), form.get("note", ""), form.get("form_token")
    if kind not in [k.value for k in VerdictKind] or not isinstance(note, str):
        return render(request, "error.html", status=400, message="Choose a verdict.")
    if len(note) > MAX_NOTE:
        return render(request, "error.html", status=400, message="The note is too long.")
    if not isinstance(token, str) or not token:
        return render(request, "error.html", status=400, message="Reload the page and retry.")
    found = await alert_detail(request[CONN], alert_id)
    if found is None:
        return render(request, "error.html", status=404, message="No such alert in the index.")
    user = request[USER]
    assert user is not None  # `requires` let the request through
    verdict = verdict_on(found, VerdictKind(str(kind)), note, user.username, token)
    try:
        await request.app[PAGES].publish_verdict(verdict)
    except (KafkaError, TimeoutError) as exc:
        message = f"The verdict was not sent ({type(exc).__name__}); send it again."
        return render(request, "error.html", status=503, message=message)
    return see_other(f"/alerts/{alert_id}?sent={verdict.verdict.value}")


def add_verdict_routes(app: web.Application) -> None:
    app.router.add_post("/alerts/{alert_id}/verdict", post_verdict)
