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
from typing import Any

import psycopg
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console.index_store import purge
from console.indexer import Indexer
from console.metrics import ConsoleMetrics
from console.settings import ConsoleSettings
from stream.settings import Settings

__all__ = ["Console", "connector", "serve"]

log = logging.getLogger(__name__)
PING_TIMEOUT_S = 2.0


def connector(database_url: str) -> Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]:
    async def connect() -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(database_url, connect_timeout=5)

    return connect


class Console:
    def __init__(self, settings: Settings, console: ConsoleSettings) -> None:
        self.settings = settings
        self.console = console
        self.metrics = ConsoleMetrics()
        self.connect = connector(console.database_url)
        self.indexer = Indexer(settings, console.group_id, self.connect, self.metrics)

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
        app = web.Application()
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
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
