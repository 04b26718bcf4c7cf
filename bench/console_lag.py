"""How far the console's indexer lags behind `risk-alerts` at a steady
alert rate (issue 15's target: < 2 s at 500 alerts/s).

The alerts are produced at the rate into topics of the run's own (a
suffix), each stamped with its send time as `detected_at`; a `fraudstream
console` process (its own group, a fresh database) indexes them. An
alert's lag is the time from its send to its row being written
(`indexed_at`: its transaction's start, on the same machine's clock); the
console's own histogram adds the commit (rows, then offsets). The
baseline is a plain consumer in the bench process reading the same topic
with no database: what Kafka delivery alone costs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import orjson
import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from console.migrations import migrate
from console.settings import ConsoleSettings, console_to_env
from detectors.decisions import Alert
from detectors.rules import Mode, Severity
from detectors.rules_entities import EntityType
from detectors.timestamps import parse_rfc3339_ms
from devenv.postgres import create_database, database_url
from stream.kafka_io import partitions
from stream.settings import Settings, to_env
from stream.topics import create_all_topics

__all__ = ["LagResult", "dumps", "report", "run_lag_bench"]

TICK_S = 0.01


@dataclass(frozen=True, slots=True)
class LagResult:
    rate: int
    seconds: float
    preloaded: int
    sent: int
    indexed: int
    console_lag_s: list[float]
    baseline_lag_s: list[float]
    # The console's own histogram (Kafka timestamp -> rows and offsets
    # committed): bucket bound (s) -> share of the records within it.
    committed_within: dict[str, float]


def _alert(n: int, now_ms: int, tag: str) -> bytes:
    alert = Alert(
        alert_id=f"al_{tag}{n:024x}",
        rule_id=("user_order_velocity", "device_voucher_accounts", "merchant_refund_rate")[n % 3],
        rule_version=1,
        severity=(Severity.HIGH, Severity.CRITICAL, Severity.MEDIUM)[n % 3],
        entity_type=EntityType.USER,
        entity_id=f"u{n % 5000}",
        window_ms=600_000,
        window_start_ms=now_ms - 600_000,
        observed=9,
        threshold=8,
        trigger_event_id=f"e{n}",
        trigger_topic="orders",
        occurred_at_ms=now_ms - 20,
        detected_at_ms=now_ms,
        mode=Mode.ENFORCE,
        evidence={"aggregate": "count", "value": 9, "window": "10m"},
        margin=1,
        ruleset_version="b" * 64,
    )
    return orjson.dumps(alert.to_wire())


async def _produce(settings: Settings, rate: int, seconds: float, tag: str) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=2)
    await producer.start()
    sent, start = 0, time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) + 1
            now_ms = int(time.time() * 1000)
            while sent < due:
                value = _alert(sent, now_ms, tag)
                await producer.send(settings.topics.alerts, value, key=f"u{sent % 5000}".encode())
                sent += 1
            await asyncio.sleep(TICK_S)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


async def _baseline(settings: Settings, stop: asyncio.Event, lags: list[float]) -> None:
    """Every alert's delivery delay to a plain consumer (no group, no database)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(await partitions(settings.kafka_bootstrap, [settings.topics.alerts]))
        await consumer.seek_to_beginning()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100, max_records=1000)
            now_ms = time.time() * 1000
            for msgs in batches.values():
                for m in msgs:
                    sent_ms = parse_rfc3339_ms(orjson.loads(m.value)["detected_at"])
                    lags.append((now_ms - sent_ms) / 1000)
    finally:
        await consumer.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _console(
    settings: Settings, console: ConsoleSettings, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    child_env = {**env, **to_env(settings), **console_to_env(console)}
    return subprocess.Popen(
        [sys.executable, "-m", "console.cli", "console"],
        env=child_env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def _preload(url: str, n: int) -> None:
    """`n` older alerts already in the index (the table a console has after
    weeks), written directly: the run measures indexing beside them."""
    migrate(url)
    body = _alert(0, 0, "pre").decode()
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO alerts (alert_id, rule_id, rule_version, severity, entity_type,"
            " entity_id, mode, ruleset_version, occurred_at, detected_at, body)"
            " SELECT 'al_pre' || i, 'rule_' || (i %% 12), 1, 'high', 'user', 'u' || (i %% 20000),"
            " 'enforce', '', now() - i * interval '20 second', now() - i * interval '20 second',"
            " %s::jsonb FROM generate_series(1, %s) AS i",
            (body, n),
        )


def _indexed_lags(url: str) -> list[float]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM indexed_at - detected_at) FROM alerts"
            " WHERE alert_id NOT LIKE 'al\\_pre%%'"
        ).fetchall()
    return [float(r[0]) for r in rows]


async def run_lag_bench(
    settings: Settings,
    postgres_port: int,
    rate: int,
    seconds: float,
    home: Path,
    env: dict[str, str],
    preload: int = 0,
) -> LagResult:
    tag = uuid.uuid4().hex[:8]
    settings = settings.replace(topics=settings.topics.with_suffix(f"-lag-{tag}"))
    await create_all_topics(settings)
    name = f"bench_{tag}"
    create_database(postgres_port, name)
    console = ConsoleSettings(
        database_url=database_url(postgres_port, name), group_id=f"bench-console-{tag}",
        web_port=_free_port(),
    )
    if preload:
        _preload(console.database_url, preload)
    proc = _console(settings, console, home / f"console-lag-{tag}.log", env)
    stop, baseline_lags = asyncio.Event(), list[float]()
    baseline = asyncio.create_task(_baseline(settings, stop, baseline_lags))
    try:
        await asyncio.sleep(3.0)  # migrations and the group join, before the clock starts
        sent = await _produce(settings, rate, seconds, tag)
        deadline = time.monotonic() + 60
        while len(lags := _indexed_lags(console.database_url)) < sent or len(baseline_lags) < sent:
            if time.monotonic() > deadline or proc.poll() is not None:
                break
            await asyncio.sleep(0.2)
        committed = _committed_within(console.web_port)
    finally:
        stop.set()
        await baseline
        proc.terminate()
        proc.wait(30)
    return LagResult(rate, seconds, preload, sent, len(lags), lags, baseline_lags, committed)


def _committed_within(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    buckets: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "fraud_console_index_delay_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets[sample.labels["le"]] = sample.value
    total = buckets.get("+Inf", 0.0)
    shown = ("0.25", "0.5", "1.0", "2.0")
    return {le: n / total for le, n in buckets.items() if total and le in shown}


def _quantiles(values: list[float]) -> str:
    if not values:
        return "no values"
    q = statistics.quantiles(values, n=100) if len(values) > 1 else values * 99
    return (
        f"p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms, "
        f"max {max(values) * 1000:.0f} ms"
    )


def report(result: LagResult) -> str:
    return "\n".join(
        [
            f"console indexer lag at {result.rate} alerts/s for {result.seconds:.0f} s "
            f"beside {result.preloaded} older alerts: {result.indexed}/{result.sent} indexed",
            f"  console (send -> row written, indexed_at): {_quantiles(result.console_lag_s)}",
            f"  baseline (send -> consumed, no database): {_quantiles(result.baseline_lag_s)}",
            "  committed (the console's histogram, Kafka timestamp -> offsets committed): "
            + ", ".join(f"{v:.1%} within {le} s" for le, v in result.committed_within.items()),
        ]
    )


def _summary(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {}
    q = statistics.quantiles(values, n=100)
    return {"p50_s": q[49], "p95_s": q[94], "p99_s": q[98], "max_s": max(values)}


def dumps(result: LagResult) -> bytes:
    """The run's numbers (quantiles, not every alert's lag)."""
    out = dataclasses.asdict(result)
    out["console_lag_s"] = _summary(result.console_lag_s)
    out["baseline_lag_s"] = _summary(result.baseline_lag_s)
    return orjson.dumps(out, option=orjson.OPT_INDENT_2)
