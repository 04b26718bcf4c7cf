"""An HTTP client of the console that logs in as a browser would (the login
form's CSRF cookie, then the session's CSRF token from a page) and posts
forms with that token, for tests that need the server's answers rather
than a browser's rendering."""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiohttp
from yarl import URL

__all__ = ["Answer", "Client", "Logins", "field"]


@dataclass(frozen=True)
class Answer:
    status: int
    location: str
    text: str


class Client:
    """One logged-in browser, as far as the server can tell."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base, self.user, self.password = base, user, password
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def log_in(self) -> None:
        await self.http.get(self.base + "/login")
        login_csrf = self.login_csrf()
        form = {"username": self.user, "password": self.password, "csrf_token": login_csrf}
        async with self.http.post(self.base + "/login", data=form) as r:
            assert r.status == 200, await r.text()  # the redirect followed
        self.csrf = field(await self.text("/rules"), "csrf_token")

    def login_csrf(self) -> str:
        return self.http.cookie_jar.filter_cookies(URL(self.base))["fs_login_csrf"].value

    async def text(self, path: str) -> str:
        async with self.http.get(self.base + path) as r:
            assert r.status == 200, path
            return await r.text()

    async def post(self, path: str, form: dict[str, object]) -> Answer:
        data = [("csrf_token", self.csrf)]
        for k, v in form.items():
            data += [(k, x) for x in v] if isinstance(v, list) else [(k, str(v))]
        async with self.http.post(self.base + path, data=data, allow_redirects=False) as r:
            return Answer(r.status, r.headers.get("Location", ""), await r.text())


def field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, name
    return found.group(1)


class Logins:
    """Logs users in, each its own client; closes them at the test's end."""

    def __init__(self, base: str, password: str) -> None:
        self.base, self.password = base, password
        self.clients: list[Client] = []

    async def __call__(self, user: str) -> Client:
        c = Client(self.base, user, self.password)
        self.clients.append(c)
        await c.log_in()
        return c
