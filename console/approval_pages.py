"""The two-person rule's pages: `/approvals` (pending requests, oldest
first, and the 50 newest decisions), approving or rejecting one (approver
or admin, never the requester: refused on the server, 403), and a rule
set to publish (`/rulesets/new`, approver or admin: pasted or uploaded,
checked as `fraudstream control rules publish` checks it, then kept as a
request a second person approves).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError

from console.action_forms import FormError, checked, form_text, provenance, reason_of
from console.action_pages import acting_user, bad_form, now_ms, read_form
from console.approvals import (
    ApprovalError,
    ApprovalRequest,
    Decision,
    approval_requests,
    decide,
    request_approval,
)
from console.render import render
from console.request_state import CONN, USER
from console.sessions import new_token
from console.two_person import ApprovalKind
from console.users import Role
from console.web_auth import PAGES, requires, see_other
from detectors.control import MAX_REASON, Ruleset
from detectors.rulebook import RulebookError
from detectors.ruleset_check import MAX_RULESET_BYTES
from stream.control_rules import build_ruleset

__all__ = ["add_approval_routes"]

DECIDED_ROWS = 50
PENDING_ROWS = 200


@requires(Role.VIEWER)
async def approvals(request: web.Request) -> web.StreamResponse:
    user = request[USER]
    conn = request[CONN]
    return render(
        request,
        "approvals.html",
        pending=await approval_requests(conn, pending=True, limit=PENDING_ROWS),
        decided=await approval_requests(conn, pending=False, limit=DECIDED_ROWS),
        can_decide=user is not None and user.role.allows(Role.APPROVER),
        requested=request.query.get("requested", ""),
        done=request.query.get("done", ""),
    )


async def _decide(request: web.Request, approve: bool) -> web.StreamResponse:
    user = acting_user(request)
    request_id = request.match_info["request_id"]
    form = await read_form(request)
    try:
        # A rejection says why; an approval may add a note.
        reason = reason_of(form) if not approve else form_text(form, "reason", MAX_REASON, False)
    except FormError as exc:
        return bad_form(request, str(exc))
    send = request.app[PAGES].publish_control
    try:
        await decide(request[CONN], Decision(request_id, approve, reason), user, now_ms(), send)
    except ApprovalError as exc:
        return bad_form(request, str(exc), exc.status)
    except (KafkaError, TimeoutError) as exc:
        message = (
            f"Kafka did not answer ({type(exc).__name__}): the request stays pending, but its"
            " record may have reached the workers. Approve it again (the same record);"
            " do not reject it."
        )
        return bad_form(request, message, 503)
    return see_other(f"/approvals?done={'approved' if approve else 'rejected'}")


@requires(Role.APPROVER)
async def approve(request: web.Request) -> web.StreamResponse:
    return await _decide(request, approve=True)


@requires(Role.APPROVER)
async def reject(request: web.Request) -> web.StreamResponse:
    return await _decide(request, approve=False)


def _ruleset_form(request: web.Request, status: int = 200, **context: Any) -> web.Response:
    context.setdefault("errors", [])
    context.setdefault("rules_yaml", "")
    context.setdefault("reason", "")
    return render(
        request,
        "ruleset_new.html",
        status=status,
        form_token=new_token(),
        max_bytes=MAX_RULESET_BYTES,
        **context,
    )


@requires(Role.APPROVER)
async def new_ruleset(request: web.Request) -> web.StreamResponse:
    return _ruleset_form(request)


def _rules_text(form: Any) -> str:
    """The uploaded file if one was chosen, else the pasted text."""
    upload = form.get("rules_file")
    if isinstance(upload, web.FileField) and upload.filename:  # no file chosen: empty bytes
        data = upload.file.read(MAX_RULESET_BYTES + 1)
        if len(data) > MAX_RULESET_BYTES:
            raise FormError(f"rules_file: at most {MAX_RULESET_BYTES} bytes")
        try:
            return str(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise FormError("rules_file: not UTF-8 text") from None
    text = form.get("rules_yaml", "")
    if not isinstance(text, str) or not text.strip():
        raise FormError("rules: paste the rule file or choose one to upload")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_RULESET_BYTES:
        raise FormError(f"rules_yaml: at most {MAX_RULESET_BYTES} bytes")
    return text.replace("\r\n", "\n")


@requires(Role.APPROVER)
async def post_ruleset(request: web.Request) -> web.StreamResponse:
    user = acting_user(request)
    form = await read_form(request)
    shown = {"rules_yaml": _shown(form, "rules_yaml"), "reason": ""}
    try:
        text = _rules_text(form)
        shown["rules_yaml"] = text
        meta = provenance(form, user.username, "ruleset", now_ms())
        shown["reason"] = meta.reason
        record = checked(build_ruleset(text, "rules_yaml", meta))
    except RulebookError as exc:
        return _ruleset_form(request, 400, errors=[str(e) for e in exc.errors], **shown)
    except FormError as exc:
        return _ruleset_form(request, 400, errors=[str(exc)], **shown)
    assert isinstance(record, Ruleset)
    book = record.rulebook
    summary = f"{book.name} {book.version}: {len(book.rules)} rules, {record.ruleset_version}"
    req = ApprovalRequest(ApprovalKind.RULESET, record, summary)
    await request_approval(request[CONN], req)
    return see_other(f"/approvals?requested={req.request_id}")


def _shown(form: Any, name: str) -> str:
    """A text field to show again on an error page (bounded like the field)."""
    value = form.get(name, "")
    return value if isinstance(value, str) and len(value) <= MAX_RULESET_BYTES else ""


def add_approval_routes(app: web.Application) -> None:
    app.router.add_get("/approvals", approvals)
    app.router.add_post("/approvals/{request_id}/approve", approve)
    app.router.add_post("/approvals/{request_id}/reject", reject)
    app.router.add_get("/rulesets/new", new_ruleset)
    app.router.add_post("/rulesets/new", post_ruleset)
