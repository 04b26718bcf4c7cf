"""Releasing a freeze from the freezes page (`POST /freezes/<id>/release`,
analyst and above): a `release` control record with a required reason (free
text, kept in the record and the audit log) and a reason code (risk ops'
taxonomy, e.g. `kyc_ok`). The workers publish the release on the freeze's
topic; the indexer then marks the freeze released.

A fund freeze above its currency's two-person limit (or of unknown size,
console.two_person) is not published: it becomes a pending request on
`/approvals`, published when an approver other than the requester approves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from console.action_forms import FormError, provenance, release_record
from console.action_pages import (
    acting_user,
    bad_form,
    now_ms,
    publish_or_503,
    read_form,
)
from console.approvals import ApprovalError, ApprovalRequest, request_approval
from console.request_state import CONN, USER
from console.sessions import new_token
from console.two_person import ApprovalKind, needs_second_person
from console.users import Role
from console.web_auth import PAGES, requires, see_other
from detectors.release_types import FREEZE_ID_PATTERN
from stream.control_cli import RELEASE_TYPES

__all__ = ["add_release_routes", "release_context"]


async def _freeze(conn: AsyncConnection[Any], freeze_id: str) -> dict[str, Any] | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT freeze_id, kind, subject_type, subject_id, state, amount_minor, currency"
            " FROM freezes WHERE freeze_id = %s",
            (freeze_id,),
        )
        return await cur.fetchone()


def release_context(request: web.Request, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the freezes page needs for its release forms: whether the user
    may release, the form's token, and which freezes wait for a second person."""
    user = request[USER]
    thresholds = request.app[PAGES].settings.two_person_release
    return {
        "can_release": user is not None and user.role.allows(Role.ANALYST),
        "form_token": new_token(),
        "release_types": RELEASE_TYPES,
        "two_person": {
            r["freeze_id"]
            for r in rows
            if needs_second_person(r["kind"], r["amount_minor"], r["currency"], thresholds)
        },
    }


def _summary(row: Mapping[str, Any]) -> str:
    value = (
        f"{row['amount_minor']} {row['currency']}"
        if row["amount_minor"] is not None
        else ("no value")
    )
    return f"{row['kind']} freeze of {row['subject_type']} {row['subject_id']}, {value}"


@requires(Role.ANALYST)
async def post_release(request: web.Request) -> web.StreamResponse:
    freeze_id = request.match_info["freeze_id"]
    if FREEZE_ID_PATTERN.fullmatch(freeze_id) is None:
        return bad_form(request, "No such freeze.", 404)
    row = await _freeze(request[CONN], freeze_id)
    if row is None:
        return bad_form(request, "No such freeze in the index.", 404)
    if row["state"] != "active":
        return bad_form(request, "This freeze is released already.", 409)
    user = acting_user(request)
    try:
        form = await read_form(request)
        meta = provenance(form, user.username, f"release:{freeze_id}", now_ms())
        record = release_record(form, freeze_id, meta)
    except FormError as exc:
        return bad_form(request, str(exc))
    thresholds = request.app[PAGES].settings.two_person_release
    if needs_second_person(row["kind"], row["amount_minor"], row["currency"], thresholds):
        req = ApprovalRequest(ApprovalKind.RELEASE, record, _summary(row))
        try:
            await request_approval(request[CONN], req)
        except ApprovalError as exc:
            return bad_form(request, str(exc), exc.status)
        return see_other(f"/approvals?requested={req.request_id}")
    failed = await publish_or_503(request, record)
    if failed is not None:
        return failed
    return see_other(f"/freezes?kind={row['kind']}&released={freeze_id}")


def add_release_routes(app: web.Application) -> None:
    app.router.add_post("/freezes/{freeze_id}/release", post_release)
