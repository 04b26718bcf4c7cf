"""The worker's watch on Redis: start the store however long Redis takes to
come up, and notice when Redis has lost its state while running.

A Redis restart without persistence, a flush or a failover that dropped
writes leaves the worker running on empty windows and duplicate guards;
nothing fails, so only the epoch sentinel (stream.store) shows it. The
watchdog turns that into a metric and an error log that names the way back
(`fraudstream replay`)."""

from __future__ import annotations

import asyncio
import logging

from stream.errors import StoreLayoutMismatch
from stream.metrics import Metrics
from stream.retry import Backoff, Sleep, retry
from stream.store.redis_store import RedisStore

__all__ = ["EPOCH_INTERVAL_S", "FIRST_BACKOFF_S", "StoreWatchdog"]

log = logging.getLogger(__name__)
EPOCH_INTERVAL_S = 5.0
FIRST_BACKOFF_S = 0.2


class StoreWatchdog:
    def __init__(
        self,
        store: RedisStore,
        metrics: Metrics,
        max_backoff_s: float,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._backoff = Backoff(FIRST_BACKOFF_S, max_backoff_s)
        self._sleep = sleep
        # Set once the store has started: agents, the merge timer and the
        # health page wait for it.
        self.started = asyncio.Event()
        # Why the store refuses to start although Redis answers (shown on /readyz).
        self.refusal: str | None = None

    async def start(self) -> None:
        """Start the store, retrying until Redis answers."""

        def on_failure(exc: Exception, delay: float) -> None:
            self._metrics.store_up.set(0)
            if isinstance(exc, StoreLayoutMismatch):
                # Nothing is applied meanwhile: agents wait for the store.
                self.refusal = str(exc)
                log.error("refusing the Redis state: %s; checking again in %.1fs", exc, delay)
                return
            log.warning("Redis not ready (%s); retrying in %.1fs", exc, delay)

        await retry(self._store.start, self._backoff, on_failure, self._sleep)
        self.refusal = None
        self._metrics.store_up.set(1)
        self.started.set()

    async def check_epoch(self) -> None:
        """Run every EPOCH_INTERVAL_S: has Redis lost its state?"""
        if not self.started.is_set():
            return
        try:
            intact = await self._store.check_epoch()
        except Exception as exc:  # an outage is reported by the batch path
            log.debug("epoch check skipped: %s", exc)
            return
        if not intact:
            self._metrics.store_wipes.inc()
            log.error(
                "Redis lost its state (restart without persistence, flush or failover): "
                "windows and duplicate guards restart from zero. Rebuild them with "
                "`fraudstream replay --since <time>` (see docs/GUARANTEES.md, Redis loss)."
            )
