"""Login, logout, sessions, CSRF and role checks for the console's pages.

- A session is a random token in an HttpOnly, SameSite=Strict cookie
  (Secure as `ConsoleSettings.secure_cookies()` says), its row in Postgres
  (`console.sessions` says why server-side).
- Every POST carries a CSRF token (form field `csrf_token` or header
  `X-CSRF-Token`), compared in constant time with the session's; the login
  form, before any session, with a random token in a cookie of its own
  (double submit). A POST without it is refused (403) before any handler.
- `requires(role)` guards a handler: no session sends a page view to the
  login page (401 for anything else), too small a role gets 403.
- Logins, failed logins and logouts leave audit records.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
import psycopg
from aiohttp import web
from aiokafka.errors import KafkaError

from console.index_store import write_rows
from console.login_throttle import FAILED, LOCKED, locked_out
from console.render import render
from console.request_state import CONN, SESSION, USER
from console.rows import AuditRow
from console.sessions import (
    Session,
    create_session,
    end_session,
    find_session,
    new_token,
    same_token,
)
from console.settings import ConsoleSettings
from console.users import Role, Users
from detectors.control import ControlRecord
from detectors.rulebook import Rulebook
from detectors.verdicts import Verdict

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOGIN_CSRF_COOKIE",
    "PAGES",
    "SESSION_COOKIE",
    "Handler",
    "Pages",
    "add_auth_routes",
    "auth_middleware",
    "local_target",
    "requires",
    "see_other",
]

SESSION_COOKIE = "fs_session"
LOGIN_CSRF_COOKIE = "fs_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
OPEN_PATHS = ("/livez", "/readyz", "/metrics", "/static/")
log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


async def unpublished(item: object) -> None:
    """The publisher of a console given none: every send fails as a Kafka
    that does not answer would."""
    raise KafkaError("the console has no publisher")


@dataclass(frozen=True, slots=True)
class Pages:
    """What the pages need, on the aiohttp application."""

    users: Users
    settings: ConsoleSettings
    connect: Connect
    rule_descriptions: dict[str, str]
    # Where an analyst's verdict goes (console.verdict_pages); by default
    # nowhere: the form answers 503 as when Kafka does not answer.
    publish_verdict: Callable[[Verdict], Awaitable[None]] = unpublished
    # Where an operator's control record goes (releases, list entries,
    # snoozes, rule modes); by default nowhere, and those forms answer 503.
    publish_control: Callable[[ControlRecord], Awaitable[None]] = unpublished
    # The rule file the workers are given (the rules page); None: unreadable.
    rulebook: Rulebook | None = None


PAGES = web.AppKey("pages", Pages)


def now_ms() -> int:
    return int(time.time() * 1000)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def local_target(raw: str | None) -> str:
    """Where to go after the login: a path on this site, never elsewhere
    (`//host`, `https://…`, backslash tricks and control characters, which
    browsers drop from a URL, as in `/<TAB>/host`, give `/`)."""
    if not raw or not raw.startswith("/") or raw.startswith("//") or "\\" in raw:
        return "/"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        return "/"
    return raw


def _cookie(response: web.StreamResponse, pages: Pages, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=pages.settings.secure_cookies(),
    )


async def _csrf_ok(request: web.Request, session: Session | None) -> bool:
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        value = (await request.post()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if request.path == "/login":  # its form is made before any session
        expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    else:
        expected = session.csrf_token if session else None
    return expected is not None and same_token(expected, given)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Opens the request's database connection, finds its session and user,
    and refuses a POST whose CSRF token is missing or wrong."""
    if request.path.startswith(OPEN_PATHS):
        return await handler(request)
    pages = request.app[PAGES]
    try:
        conn = await pages.connect()
    except psycopg.Error as exc:
        log.error("console: the database is unavailable for a page: %s", exc)
        return render(request, "error.html", status=503, message="The database is unavailable.")
    try:
        await conn.set_autocommit(True)
        request[CONN] = conn
        token = request.cookies.get(SESSION_COOKIE)
        session = await find_session(conn, token, now_ms()) if token else None
        user = pages.users.get(session.username) if session else None
        request[SESSION] = session if user else None
        request[USER] = user
        unsafe = request.method not in ("GET", "HEAD")
        if unsafe and not await _csrf_ok(request, request[SESSION]):
            return render(request, "error.html", status=403, message="Missing or wrong CSRF token.")
        return await handler(request)
    finally:
        await conn.close()


def requires(role: Role) -> Callable[[Handler], Handler]:
    """Guards a page handler: a user of `role` or above."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            user = request.get(USER)
            if user is None:
                if request.method == "GET" and "HX-Request" not in request.headers:
                    return see_other(f"/login?next={quote(request.path_qs, safe='')}")
                raise web.HTTPUnauthorized(headers={"HX-Redirect": "/login"})
            if not user.role.allows(role):
                return render(
                    request, "error.html", status=403, message=f"This needs the {role} role."
                )
            return await handler(request)

        return checked

    return wrap


async def _audit(request: web.Request, actor: str, action: str, **payload: Any) -> None:
    row = AuditRow(
        idempotency_key=f"console:{uuid.uuid4()}",
        at_ms=now_ms(),
        actor=actor,
        action=action,
        reason="",
        target_type="session",
        target_id=None,
        payload=orjson.dumps({**payload, "remote": request.remote}).decode(),
    )
    await write_rows(request[CONN], [row])


async def login_page(request: web.Request) -> web.StreamResponse:
    return _login_form(request, 200, error="")


def _login_form(request: web.Request, status: int, error: str) -> web.StreamResponse:
    pages = request.app[PAGES]
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()
    target = local_target(request.query.get("next"))
    response = render(
        request, "login.html", status=status, login_csrf=token, target=target, error=error
    )
    _cookie(response, pages, LOGIN_CSRF_COOKIE, token, 3600)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    pages = request.app[PAGES]
    form = await request.post()
    username, password = str(form.get("username", ""))[:64], str(form.get("password", ""))
    actor, limits = username or "(empty)", pages.settings
    if await locked_out(
        request[CONN], actor, now_ms(), limits.login_max_failures, limits.login_lockout_s
    ):
        await _audit(request, actor, LOCKED)
        minutes = max(1, round(limits.login_lockout_s / 60))
        message = f"Too many failed logins for this username: try again in {minutes} minutes."
        return _login_form(request, 429, error=message)
    user = pages.users.authenticate(username, password)
    if user is None:
        await _audit(request, actor, FAILED)
        return _login_form(request, 401, error="Wrong username or password.")
    token, session = await create_session(
        request[CONN], user.username, now_ms(), pages.settings.session_ttl_s
    )
    await _audit(request, user.username, "console.login", session=session.digest[:16])
    response = see_other(local_target(str(form.get("next", "/"))))
    _cookie(response, pages, SESSION_COOKIE, token, int(pages.settings.session_ttl_s))
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is not None:
        await end_session(request[CONN], session.digest)
        await _audit(request, session.username, "console.logout", session=session.digest[:16])
    response = see_other("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def add_auth_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
