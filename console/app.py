"""The console process: migrations first, then the indexer, the retention
purge and an HTTP server with /livez, /readyz and /metrics, until stopped.

Readiness means the console can serve what it indexed: the database
answers and the indexer's consumer has partitions assigned.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console.approval_pages import add_approval_routes
from console.assignment import add_assignment_routes
from console.bulk_verdicts import add_bulk_routes
from console.entity_page import add_entity_routes
from console.entity_state import ENTITY_STATE, EntityStateReader
from console.index_store import purge
from console.indexer import Indexer
from console.kafka_publish import KafkaPublisher
from console.list_pages import add_list_routes
from console.metrics import ConsoleMetrics
from console.pages import add_page_routes
from console.record_pages import add_record_routes
from console.release_pages import add_release_routes
from console.render import SECURITY_HEADERS
from console.rules_page import add_rules_routes
from console.settings import ConsoleSettings
from console.users import load_users
from console.verdict_pages import add_verdict_routes
from console.verdict_stats import standing_verdicts
from console.web_auth import PAGES, Pages, add_auth_routes, auth_middleware
from detectors.errors import ConfigError
from detectors.rulebook import Rulebook, RulebookError
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store_wiring import open_store

__all__ = [
    "STATIC",
    "Console",
    "connector",
    "pages_off",
    "rule_descriptions",
    "rulebook_of",
    "serve",
]

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 2.0
STATIC = Path(__file__).resolve().parent / "static"
PAGES_OFF = (
    "The console's pages are off: FRAUD_CONSOLE_USERS_FILE is not set "
    "(docs/CONSOLE.md says how to make the users file). /livez, /readyz and /metrics answer."
)


def connector(database_url: str) -> Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(database_url, connect_timeout=5)

    return connect


def rulebook_of(settings: Settings) -> Rulebook | None:
    """The rule file the workers are given (FRAUD_RULES_FILE), for rule
    descriptions and the counters an entity page shows; None when it cannot
    be read (the pages say so)."""
    try:
        return load_rulebook(settings)
    except (ConfigError, RulebookError) as exc:
        log.warning("console: rule file unavailable (%s)", exc)
        return None


def rule_descriptions(book: Rulebook | None) -> dict[str, str]:
    if book is None:
        return {}
    return {rule.rule_id: rule.description.strip() for rule in book.rules}


def entity_state_reader(settings: Settings, book: Rulebook | None) -> EntityStateReader | None:
    """What the entity pages read the workers' counters with; None (the
    pages say counters are unavailable) without the rule file or the
    workers' Redis settings. Read-only: the store is never started, since
    starting claims the namespace."""
    if book is None:
        return None
    try:
        return EntityStateReader(open_store(settings), book)
    except ConfigError as exc:
        log.warning("console: entities' counters unavailable (%s)", exc)
        return None


async def pages_off(request: web.Request) -> web.Response:
    return web.Response(status=503, text=PAGES_OFF, headers=SECURITY_HEADERS)


class Console:
    """Raises ConfigError when the users file is set but unusable: the
    pages never run with an authentication the operator did not mean."""

    def __init__(self, settings: Settings, console: ConsoleSettings) -> None:
        self.settings = settings
        self.console = console
        self.metrics = ConsoleMetrics()
        self.connect = connector(console.database_url)
        self.indexer = Indexer(settings, console.group_id, self.connect, self.metrics)
        self.pages: Pages | None = None
        self.entity_state: EntityStateReader | None = None
        self.publisher = KafkaPublisher(settings)  # what operators do, as records
        if console.users_file is not None:
            users = load_users(console.users_file)
            book = rulebook_of(settings)
            descriptions = rule_descriptions(book)
            self.entity_state = entity_state_reader(settings, book)
            self.pages = Pages(
                users,
                console,
                self.connect,
                descriptions,
                self.publisher.verdict,
                self.publisher.control,
                rulebook=book,
            )

    async def purge_once(self, now_ms: int) -> int:
        conn = await self.connect()
        try:
            await conn.set_autocommit(True)
            counts = await purge(conn, now_ms - self.console.retention_s * 1000)
        finally:
            await conn.close()
        for c in counts:
            self.metrics.purged.labels(c.table).inc(c.rows)
        total = sum(c.rows for c in counts)
        if total:
            log.info("retention: purged %s", {c.table: c.rows for c in counts if c.rows})
        return total

    async def purge_forever(self) -> None:
        while True:
            try:
                await self.purge_once(int(time.time() * 1000))
            except psycopg.Error as exc:
                log.error(
                    "retention: purge failed (%s); next try in %ss", exc, self.console.purge_every_s
                )
            await asyncio.sleep(self.console.purge_every_s)

    async def refresh_precision(self) -> None:
        """The per-rule precision gauges from the standing verdicts
        (console.verdict_stats); kept as they were when the database fails."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                conn = await self.connect()
                try:
                    rows = await standing_verdicts(conn)
                finally:
                    await conn.close()
        except (psycopg.Error, TimeoutError) as exc:
            log.warning("console: verdict counts not refreshed (%s)", exc)
            return
        for r in rows:
            for verdict, n in (
                ("true_positive", r.true_positive),
                ("false_positive", r.false_positive),
                ("unsure", r.unsure),
            ):
                self.metrics.rule_verdicts.labels(r.rule_id, verdict).set(n)
            if r.precision is not None:
                self.metrics.rule_precision.labels(r.rule_id).set(r.precision)

    async def database_ok(self) -> bool:
        try:
            async with asyncio.timeout(PING_TIMEOUT_S):
                conn = await self.connect()
                try:
                    await conn.execute("SELECT 1")
                finally:
                    await conn.close()
            return True
        except (psycopg.Error, TimeoutError):
            return False

    def web_app(self) -> web.Application:
        """The probes always; the pages when there is a users file."""
        app = web.Application(middlewares=[auth_middleware] if self.pages else [])
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self.pages is None:
            app.router.add_get("/{path:.*}", pages_off)
            return app
        app[PAGES] = self.pages
        if self.entity_state is not None:
            app[ENTITY_STATE] = self.entity_state
        add_auth_routes(app)
        add_page_routes(app)
        add_verdict_routes(app)
        add_entity_routes(app)
        add_record_routes(app)
        add_rules_routes(app)
        add_assignment_routes(app)
        add_bulk_routes(app)
        add_release_routes(app)
        add_approval_routes(app)
        add_list_routes(app)
        app.router.add_static("/static", STATIC)
        return app

    async def _livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: web.Request) -> web.Response:
        database = await self.database_ok()
        assigned = self.indexer.assigned()
        ready = database and assigned > 0
        body = {"ready": ready, "database": database, "assigned_partitions": assigned}
        return web.json_response(body, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        await self.refresh_precision()
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )


async def serve(settings: Settings, console: ConsoleSettings) -> None:
    """Run until SIGTERM or SIGINT; a task that fails stops the process."""
    app = Console(settings, console)
    runner = web.AppRunner(app.web_app(), access_log=None)  # probes every few seconds
    await runner.setup()
    await web.TCPSite(runner, console.web_host, console.web_port).start()
    log.info("console: serving on %s:%d with %r", console.web_host, console.web_port, console)
    if app.pages is None:
        log.error("console: %s", PAGES_OFF)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(app.indexer.run(), name="indexer"),
        asyncio.create_task(app.purge_forever(), name="retention"),
        asyncio.create_task(stop.wait(), name="stop"),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # what stopped a task other than `stop` is raised here
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runner.cleanup()
        await app.publisher.stop()
        if app.entity_state is not None:
            await app.entity_state.close()
