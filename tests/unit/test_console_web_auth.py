"""Sessions, CSRF and role checks of the console's pages (console.web_auth)
through aiohttp's test server, with the session table in a small fake
connection (the real one: tests/integration/test_console_pages.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from console.app import Console
from console.request_state import USER
from console.sessions import same_token, token_digest
from console.settings import ConsoleSettings
from console.users import Role, User, Users, hash_password
from console.web_auth import (
    CSRF_HEADER,
    LOGIN_CSRF_COOKIE,
    PAGES,
    SESSION_COOKIE,
    Pages,
    add_auth_routes,
    auth_middleware,
    local_target,
    requires,
)
from detectors.errors import ConfigError
from stream.settings import Settings

TOKENS = {"viewer-token": ("vic", "csrf-vic"), "approver-token": ("amy", "csrf-amy")}


class FakeCursor:
    def __init__(self, conn: FakeConn, row: tuple[Any, ...] | None = None) -> None:
        self.conn, self.row = conn, row

    async def fetchone(self) -> tuple[Any, ...] | None:
        return self.row

    async def execute(self, sql: str, params: tuple[Any, ...]) -> None:
        """The login throttle's count of recent failures (one user here)."""
        assert "FROM audit_log" in sql
        self.row = (self.conn.audited.count("console.login_failed"),)

    async def executemany(self, sql: str, params: list[tuple[Any, ...]]) -> None:
        self.conn.audited += [p[3] for p in params]  # the audit rows' actions

    async def __aenter__(self) -> FakeCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeConn:
    """The console_sessions table: token digest -> (username, csrf token)."""

    def __init__(self) -> None:
        self.rows = {token_digest(t): v for t, v in TOKENS.items()}
        self.audited: list[str] = []

    async def set_autocommit(self, value: bool) -> None:
        return None

    async def close(self) -> None:
        return None

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    async def execute(self, sql: str, params: tuple[Any, ...]) -> FakeCursor:
        if sql.startswith("SELECT"):
            return FakeCursor(self, self.rows.get(params[0]))
        assert sql.startswith("DELETE FROM console_sessions WHERE token_sha256")
        self.rows.pop(params[0], None)
        return FakeCursor(self)


@requires(Role.APPROVER)
async def approve(request: web.Request) -> web.Response:
    return web.Response(text="approved")


@requires(Role.VIEWER)
async def look(request: web.Request) -> web.Response:
    user = request[USER]
    return web.Response(text=f"hello {user.username if user else None}")


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], FakeConn]]:
    conn = FakeConn()

    async def connect() -> Any:
        return conn

    users = Users(
        {"vic": User("vic", Role.VIEWER, "$argon2id$x"), "amy": User("amy", Role.APPROVER, "$x")}
    )
    app = web.Application(middlewares=[auth_middleware])
    app[PAGES] = Pages(users, ConsoleSettings(), connect, {})
    add_auth_routes(app)
    app.router.add_get("/look", look)
    app.router.add_post("/approve", approve)
    async with TestClient(TestServer(app)) as c:
        yield c, conn


def as_user(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


async def test_a_page_without_a_session_sends_to_the_login_page(
    client: tuple[TestClient[Any, Any], FakeConn],
) -> None:
    c, _ = client
    r = await c.get("/look?rule=x", allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login?next=%2Flook%3Frule%3Dx"
    r = await c.get("/look?rule=x")  # the login form takes the page back after the login
    assert r.url.path == "/login" and 'name="next" value="/look?rule=x"' in await r.text()
    r = await c.get("/look", headers={"HX-Request": "true"}, allow_redirects=False)
    assert r.status == 401 and r.headers["HX-Redirect"] == "/login"
    r = await c.get("/look", headers=as_user("forged-token"), allow_redirects=False)
    assert r.status == 303
    r = await c.get("/look", headers=as_user("viewer-token"))
    assert r.status == 200 and await r.text() == "hello vic"


async def test_a_post_without_the_sessions_csrf_token_is_refused(
    client: tuple[TestClient[Any, Any], FakeConn],
) -> None:
    c, _ = client
    amy = as_user("approver-token")
    assert (await c.post("/approve", headers=amy)).status == 403
    assert (await c.post("/approve", headers=amy, data={"csrf_token": "csrf-vic"})).status == 403
    assert (await c.post("/approve", headers={**amy, CSRF_HEADER: ""})).status == 403
    r = await c.post("/approve", headers=amy, data={"csrf_token": "csrf-amy"})
    assert r.status == 200 and await r.text() == "approved"
    r = await c.post("/approve", headers={**amy, CSRF_HEADER: "csrf-amy"})
    assert r.status == 200


async def test_the_login_form_needs_its_own_csrf_cookie(
    client: tuple[TestClient[Any, Any], FakeConn],
) -> None:
    c, conn = client
    r = await c.post("/login", data={"username": "vic", "password": "x", "csrf_token": "t"})
    assert r.status == 403 and conn.audited == []  # never reached the password check


async def test_a_role_below_the_one_needed_is_refused(
    client: tuple[TestClient[Any, Any], FakeConn],
) -> None:
    c, _ = client
    r = await c.post("/approve", headers=as_user("viewer-token"), data={"csrf_token": "csrf-vic"})
    assert r.status == 403 and "approver role" in await r.text()


async def test_logout_ends_the_session_for_good(
    client: tuple[TestClient[Any, Any], FakeConn],
) -> None:
    c, conn = client
    vic = as_user("viewer-token")
    r = await c.post("/logout", headers=vic, data={"csrf_token": "csrf-vic"}, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/login"
    assert conn.audited == ["console.logout"]
    assert (await c.get("/look", headers=vic, allow_redirects=False)).status == 303


async def test_the_login_page_sets_a_strict_httponly_csrf_cookie(
    client: tuple[TestClient[Any, Any], FakeConn],
) -> None:
    c, _ = client
    r = await c.get("/login?next=//evil.example/")
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    body = await r.text()
    assert 'name="next" value="/"' in body and "evil.example" not in body
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("raw", "target"),
    [
        ("/alerts/x?y=1", "/alerts/x?y=1"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/\t/evil.example", "/"),
        ("/\n/evil.example", "/"),
    ],
)
def test_after_login_only_a_path_of_this_site(raw: str | None, target: str) -> None:
    assert local_target(raw) == target


def test_tokens_compare_in_constant_time_and_never_match_nothing() -> None:
    assert same_token("abc", "abc")
    assert not same_token("abc", "abd") and not same_token("abc", None)
    assert not same_token("abc", "")


def test_cookies_are_secure_unless_the_console_listens_on_loopback() -> None:
    assert not ConsoleSettings().secure_cookies()
    assert ConsoleSettings(web_host="0.0.0.0").secure_cookies()
    assert ConsoleSettings(web_host="127.0.0.1", cookie_secure=True).secure_cookies()
    assert not ConsoleSettings(web_host="0.0.0.0", cookie_secure=False).secure_cookies()


async def test_without_a_users_file_every_page_says_so_and_the_probes_answer() -> None:
    app = Console(Settings(), ConsoleSettings()).web_app()
    async with TestClient(TestServer(app)) as c:
        for path in ("/", "/login", "/alerts/al_1"):
            r = await c.get(path)
            assert r.status == 503 and "FRAUD_CONSOLE_USERS_FILE is not set" in await r.text()
        assert (await c.get("/livez")).status == 200
        assert (await c.post("/login")).status == 405  # nothing to log in to


def test_a_users_file_that_is_set_must_be_usable(tmp_path: Path) -> None:
    bad = tmp_path / "users.yaml"
    bad.write_text("users:\n  - {username: ana, role: superuser, password_hash: x}\n")
    with pytest.raises(ConfigError, match="role must be one of"):
        Console(Settings(), ConsoleSettings(users_file=bad))
    good = tmp_path / "good.yaml"
    good.write_text(
        f"users:\n  - {{username: ana, role: admin, password_hash: '{hash_password('x' * 12)}'}}\n"
    )
    console = Console(Settings(), ConsoleSettings(users_file=good))
    assert console.pages is not None and console.pages.users.get("ana") is not None
    assert console.pages.rule_descriptions  # the built-in rule file's descriptions


async def test_hostile_and_huge_login_fields_fail_like_a_wrong_password(
    client: tuple[TestClient[Any, Any], FakeConn],
) -> None:
    c, conn = client
    form = {"csrf_token": "t", "username": "vic' OR '1'='1", "password": "p" * 1_000_000}
    r = await c.post("/login", headers={"Cookie": f"{LOGIN_CSRF_COOKIE}=t"}, data=form)
    assert r.status == 401 and "Wrong username or password." in await r.text()
    form = {"csrf_token": "t", "username": "<script>" * 10_000, "password": "x" * 20}
    r = await c.post("/login", headers={"Cookie": f"{LOGIN_CSRF_COOKIE}=t"}, data=form)
    assert r.status == 401 and "<script>" not in await r.text()
    # Logged in already (another tab): the login form's own token still counts.
    headers = {"Cookie": f"{LOGIN_CSRF_COOKIE}=t; {SESSION_COOKIE}=viewer-token"}
    r = await c.post("/login", headers=headers, data={"csrf_token": "csrf-vic", "username": "x"})
    assert r.status == 403
    r = await c.post("/login", headers=headers, data={"csrf_token": "t", "username": "x"})
    assert r.status == 401
    assert conn.audited == ["console.login_failed"] * 3


async def test_without_the_database_a_page_says_so() -> None:
    async def down() -> Any:
        raise psycopg.OperationalError("connection refused")

    app = web.Application(middlewares=[auth_middleware])
    app[PAGES] = Pages(Users({}), ConsoleSettings(), down, {})
    app.router.add_get("/look", look)
    async with TestClient(TestServer(app)) as c:
        r = await c.get("/look")
        assert r.status == 503 and "database is unavailable" in await r.text()
