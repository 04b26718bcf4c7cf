"""`python -m devenv demo`: the main job end to end on this machine.

Starts local Kafka + Redis (as `devenv up`), runs a worker process, sends the
sample stream, waits until the worker has committed all of it, prints every
decision it produced, and stops the worker (Kafka and Redis stay up until
`python -m devenv down`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from typing import Any

import orjson

from devenv import services
from devenv.samples import sample_stream
from stream import kafka_io
from stream.errors import ServiceError
from stream.settings import Settings, to_env
from stream.topics import create_all_topics

READY_TIMEOUT_S = 120.0


def run_demo(settings: Settings, base_env: dict[str, str]) -> int:
    """`base_env`: the environment without FRAUD_* (the worker gets the
    demo's settings, key hash secret included, as its FRAUD_*)."""
    layout = services.layout_of(settings)
    redis_port = services.redis_port(settings)
    _, kafka_port = settings.kafka_host_port()
    print(f"[1/4] local services: redis :{redis_port}, kafka :{kafka_port}", flush=True)
    services.start_redis(layout, redis_port)
    services.start_kafka(layout, kafka_port)
    asyncio.run(create_all_topics(settings))
    layout.home.mkdir(parents=True, exist_ok=True)
    if settings.data_dir is None:  # the worker's local files stay with the dev state
        settings = settings.replace(data_dir=layout.home / "worker-data")
    log_path = layout.home / "demo-worker.log"
    print(f"[2/4] starting worker (log: {log_path})", flush=True)
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"],
            env={**base_env, **to_env(settings)},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        _wait_ready(settings, worker)
        return asyncio.run(_drive(settings, worker))
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


def _wait_ready(settings: Settings, worker: subprocess.Popen[bytes]) -> None:
    url = f"http://{settings.web_host}:{settings.web_port}/readyz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise ServiceError("worker", f"exited with {worker.returncode}; see the worker log")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if orjson.loads(resp.read()).get("assigned_partitions", 0) > 0:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServiceError("worker", f"not ready within {READY_TIMEOUT_S}s")


async def _drive(settings: Settings, worker: subprocess.Popen[bytes]) -> int:
    topics = settings.topics
    outputs = [topics.alerts, topics.dlq]
    before = {t: await kafka_io.end_offsets(settings.kafka_bootstrap, [t]) for t in outputs}
    run_id = f"demo{int(time.time())}"
    records = sample_stream(run_id, start_ms=int(time.time() * 1000) - 3 * 3600_000)
    by_topic: dict[str, list[tuple[bytes | None, bytes | None]]] = {}
    for r in records:
        by_topic.setdefault(topics.input_name(r.topic), []).append((r.key, r.value))
    print(f"[3/4] sending {len(records)} events ({run_id})", flush=True)
    for name, pairs in by_topic.items():
        await kafka_io.produce(settings.kafka_bootstrap, name, pairs)
    await kafka_io.wait_committed(
        settings.kafka_bootstrap,
        settings.app_id,
        list(by_topic),
        still_alive=lambda: None if worker.poll() is None else f"exit {worker.returncode}",
    )
    alerts = await kafka_io.read_from(
        settings.kafka_bootstrap, topics.alerts, before[topics.alerts]
    )
    dlq = await kafka_io.read_from(settings.kafka_bootstrap, topics.dlq, before[topics.dlq])
    print("[4/4] decisions")
    _print_alerts([orjson.loads(m.value) for m in alerts])
    _print_dlq([orjson.loads(m.value) for m in dlq])
    if alerts:
        print("\n  first alert as published on", topics.alerts)
        pretty = orjson.dumps(orjson.loads(alerts[0].value), option=orjson.OPT_INDENT_2).decode()
        print("    " + pretty.replace("\n", "\n    "))
    print("\nKafka and Redis are still running: `python -m devenv down` stops them.")
    return 0


def _print_alerts(alerts: list[dict[str, Any]]) -> None:
    print(f"\n  {len(alerts)} alert(s):")
    for a in alerts:
        minutes = a["window"]["length_ms"] / 60000
        print(
            f"  - {a['alert_id']}  {a['severity'].upper()} {a['rule_id']} v{a['rule_version']}"
            f" ({a['mode']})"
        )
        print(
            f"      {a['entity_type']} {a['entity_id']}: {a['evidence'].get('aggregate')} = "
            f"{a['observed']} over {minutes:g} min (threshold {a['threshold']}, "
            f"margin +{a['margin']})"
        )
        print(
            f"      window {a['window']['start']} .. {a['window']['end']}; "
            f"trigger {a['trigger_event_id']}"
        )


def _print_dlq(records: list[dict[str, Any]]) -> None:
    kinds = Counter(r["error"]["kind"] for r in records)
    print(f"\n  {len(records)} input(s) dead-lettered: {dict(kinds)}")
    for r in records:
        err = r["error"]
        where = f"{r['source_topic']}/{r['partition']}@{r['offset']}"
        print(
            f"  - {where}: {err['kind']}{' (' + err['field'] + ')' if err['field'] else ''}"
            f" {err['message'][:90]}"
        )
