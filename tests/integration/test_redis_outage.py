"""Redis stopped mid-stream (12 s; 30 s with --soak), then restarted with its data: the worker
reports not-ready, backs off without committing unapplied input, resumes, and
loses nothing."""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from devenv import services as devservices
from stream import kafka_io
from tests.integration.applied_events import applied
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    order_json,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)


def start_persistent_redis(directory: Path, port: int) -> subprocess.Popen[bytes]:
    binary = devservices.ensure_redis_server()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    # Until Redis has loaded its AOF it answers LOADING, not data.
    while not loaded(port):
        assert proc.poll() is None and time.monotonic() < deadline, "redis did not start"
        time.sleep(0.05)
    return proc


def loaded(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


def readiness(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@pytest.mark.parametrize(
    "outage_s", [12, pytest.param(30, marks=pytest.mark.soak)], ids=["12s", "30s"]
)
async def test_redis_outage_loses_nothing(
    services: Services, tmp_path: Path, outage_s: int
) -> None:
    port = free_port()
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    redis_proc = start_persistent_redis(redis_dir, port)
    settings = services.settings(
        rules_file=write_test_rules(tmp_path),
        redis_url=f"redis://127.0.0.1:{port}/0",
        retry_max_backoff_s=2.0,
        redis_timeout_s=1.0,
    )
    await create_topics(settings)
    users = [f"user-{u}" for u in range(40)]
    events = [
        (f"e{i}", users[i % 40], f"2026-11-02T12:{(i // 40) % 60:02d}:{i % 60:02d}Z")
        for i in range(1200)
    ]
    values = [(b"m", order_json(e, u, t)) for e, u, t in events]
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        wait_ready(worker)
        await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, values[:400])
        await wait_caught_up(worker, [settings.topics.orders])
        redis_proc.terminate()  # SIGTERM: Redis writes its AOF and exits
        redis_proc.wait(30)
        await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, values[400:800])
        statuses = set()
        outage_started = time.monotonic()
        while time.monotonic() - outage_started < outage_s:
            statuses.add(readiness(settings.web_port))
            await asyncio.sleep(1)
        assert 503 in statuses and worker.alive()
        redis_proc = start_persistent_redis(redis_dir, port)
        await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, values[800:])
        await wait_caught_up(worker, [settings.topics.orders], timeout_s=120)
        assert readiness(settings.web_port) == 200
    finally:
        worker.stop()
        redis_proc.terminate()
        redis_proc.wait(30)
    redis_proc = start_persistent_redis(redis_dir, port)
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        ids = {e for e, _, _ in events}
        assert await applied(client, settings.redis_namespace, ids) == ids
    finally:
        await client.aclose()
        redis_proc.terminate()
        redis_proc.wait(30)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert "store unavailable" in log
    alerts = [
        orjson.loads(r.value)
        for r in await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.alerts)
    ]
    print(f"\nreadiness seen during the outage: {sorted(statuses)}; {len(alerts)} alerts")
    ids_by_user: dict[str, set[str]] = {}
    for a in alerts:
        ids_by_user.setdefault(a["entity_id"], set()).add(a["alert_id"])
    assert set(ids_by_user) == set(users)  # each user bursts: 5 orders within 3 minutes
    assert all(len(ids) == 1 for ids in ids_by_user.values())
