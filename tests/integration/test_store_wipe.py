"""Redis restarted empty: the loss is visible (metric, log) and
`fraudstream replay --since` rebuilds the state from Kafka, so detection
continues as if nothing had happened."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from stream import kafka_io
from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from tests.integration.services import (
    REPO,
    Services,
    WorkerProcess,
    create_topics,
    order_json,
    settings_env,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)
from tests.integration.test_redis_outage import start_persistent_redis


def wipes(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        text = resp.read().decode()
    m = re.search(r"^fraud_store_wipes_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


async def test_wipe_is_reported_and_replay_rebuilds_state(
    services: Services, tmp_path: Path
) -> None:
    from tests.integration.services import free_port

    port = free_port()
    (tmp_path / "redis").mkdir()
    redis_proc = start_persistent_redis(tmp_path / "redis", port)
    settings = services.settings(
        rules_file=write_test_rules(tmp_path), redis_url=f"redis://127.0.0.1:{port}/0"
    )
    await create_topics(settings)
    users = [f"user-{u}" for u in range(30)]
    # Each user: 3 orders before the wipe and 3 after, all within 6 minutes, so
    # an alert (5 in 10 min) needs the state from before the wipe.
    first = [order_json(f"{u}-{i}", u, f"2026-11-02T12:0{i}:00Z") for u in users for i in range(3)]
    second = [
        order_json(f"{u}-{i}", u, f"2026-11-02T12:0{i}:00Z") for u in users for i in range(3, 6)
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"".join(
            orjson.dumps({"topic": "orders", "value": orjson.loads(v)}) + b"\n"
            for v in first + second
        )
    )
    await run_backtest(settings, load_rulebook(settings), events, tmp_path / "bt.jsonl", None)
    expected = {
        orjson.loads(line)["value"]["alert_id"]
        for line in (tmp_path / "bt.jsonl").read_bytes().splitlines()
        if orjson.loads(line)["topic"] == settings.topics.alerts
    }
    assert len(expected) == 30
    try:
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        worker.start()
        try:
            wait_ready(worker)
            await kafka_io.produce(
                settings.kafka_bootstrap, settings.topics.orders, [(b"m", v) for v in first]
            )
            await wait_caught_up(worker, [settings.topics.orders])
            client = aioredis.Redis.from_url(settings.redis_url)
            await client.flushall()  # what a restart without persistence leaves behind
            await client.aclose()
            deadline = time.monotonic() + 30
            while wipes(settings.web_port) < 1 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert wipes(settings.web_port) == 1
        finally:
            worker.stop()
        assert "Redis lost its state" in (tmp_path / "worker.log").read_text(errors="replace")

        env = {"PATH": "/usr/bin:/bin", **settings_env(settings)}
        replay = subprocess.run(
            [
                sys.executable,
                "-m",
                "stream.cli",
                "replay",
                "--since",
                "2026-11-02T00:00:00Z",
                "--quiet",
            ],
            env=env,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )
        assert replay.returncode == 0, replay.stderr
        assert f"replayed {len(first)} records" in replay.stdout

        worker = WorkerProcess(settings, tmp_path / "worker2.log")
        worker.start()
        try:
            wait_ready(worker)
            await kafka_io.produce(
                settings.kafka_bootstrap, settings.topics.orders, [(b"m", v) for v in second]
            )
            await wait_caught_up(worker, [settings.topics.orders])
        finally:
            worker.stop()
    finally:
        redis_proc.terminate()
        redis_proc.wait(30)
    alerts = {
        orjson.loads(r.value)["alert_id"]
        for r in await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.alerts)
    }
    print(f"\nafter wipe + replay: {len(alerts)} alerts, clean run {len(expected)}")
    assert alerts == expected
