"""What the console's browser tests share: a database of their own with the
console's migrations, a users file, the console's web app served on a port
with Debian's chromium driving it (`executable_path`, never a downloaded
build), and a page that fails its test when a script of the data ran."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from console.app import Console
from console.index_store import write_rows
from console.mapping import index_record
from console.migrations import migrate
from console.rows import Position, Source
from console.users import hash_password
from devenv.browser import CHROMIUM
from devenv.postgres import create_database, database_url

__all__ = ["browser_page", "console_database", "index_records", "served", "users_yaml"]


def console_database(postgres_port: int, prefix: str) -> str:
    """A fresh database with the console's schema; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    create_database(postgres_port, name)
    url = database_url(postgres_port, name)
    migrate(url)
    return url


async def index_records(url: str, items: list[tuple[Source, bytes | None, bytes]]) -> None:
    """Rows as the indexer writes them (its own mapping and store code) for
    these records (topic, Kafka key, value), at offsets 0, 1, ..."""
    rows = [
        row
        for offset, (source, key, value) in enumerate(items)
        for row in index_record(source, Position(source.value, 0, offset), key, value)
    ]
    conn = await psycopg.AsyncConnection.connect(url)
    async with conn, conn.transaction():
        await write_rows(conn, rows)


def users_yaml(password: str, roles: dict[str, str]) -> str:
    """A users file: username -> role, every user with `password`."""
    lines = [
        f"  - {{username: {name}, role: {role}, password_hash: '{hash_password(password)}'}}"
        for name, role in roles.items()
    ]
    return "users:\n" + "\n".join(lines) + "\n"


@asynccontextmanager
async def served(console: Console, port: int) -> AsyncIterator[Browser]:
    """The console's web app on 127.0.0.1:`port`, and a chromium to drive it."""
    runner = web.AppRunner(console.web_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            await browser.close()
            await runner.cleanup()
            await console.publisher.stop()


@asynccontextmanager
async def browser_page(browser: Browser) -> AsyncIterator[tuple[Page, list[str]]]:
    """A page in a context of its own, and the browser's console errors; no
    dialog may open (a script of the data would have run)."""
    context = await browser.new_context()
    page = await context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield page, errors
    await context.close()
    assert dialogs == [], "a script of the data ran"
