"""The worker's HTTP pages: /livez (the process answers), /readyz (it can do
its job: Redis reachable, the control topic read, no rebalance under way, no
partition stopped at an unreadable batch) and /metrics (Prometheus)."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream.blocked import BlockedPartitions
from stream.metrics import Metrics
from stream.runner import BatchRunner
from stream.store.redis_store import RedisStore
from stream.watchdog import StoreWatchdog

__all__ = ["install_pages"]


def install_pages(
    app: faust.App,
    store: RedisStore,
    watchdog: StoreWatchdog,
    control_read: asyncio.Event,
    runner: BatchRunner,
    blocked: BlockedPartitions,
    exported: Metrics,
) -> None:
    @app.page("/livez")
    async def livez(view: Any, request: Any) -> Any:
        return view.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(view: Any, request: Any) -> Any:
        store_ok = watchdog.started.is_set() and await store.ping()
        assigned = len(app.consumer.assignment()) if app.consumer else 0
        rebalancing = bool(getattr(app, "rebalancing", False))
        stopped = blocked.snapshot()
        control = control_read.is_set()
        ready = store_ok and control and runner.store_healthy and not rebalancing and not stopped
        body = {
            "ready": ready,
            "redis": store_ok,
            "control": control,
            "rebalancing": rebalancing,
            "assigned_partitions": assigned,
            "blocked_partitions": [b.as_dict() for b in stopped],
        }
        if watchdog.refusal:
            body["store_refused"] = watchdog.refusal
        return view.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(view: Any, request: Any) -> Any:
        return view.bytes(
            generate_latest(exported.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )
