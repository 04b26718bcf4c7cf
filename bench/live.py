"""`python -m bench live`: how fast is a worker on the local real Kafka + Redis,
next to what a plain Python consumer can do on the same machine, in one run.

1. Baseline: a plain aiokafka consumer → producer pass-through of the same
   payloads (no decoding, no Redis): the ceiling for a Python consumer here.
2. Throughput: N pre-loaded events, a worker with the full default rule set;
   events/s from its first to its last processed event.
3. Latency: events offered at half the measured throughput; event-to-decision
   percentiles from the worker's own histogram, after an unmeasured warm-up
   at that rate (after the backlog the merge holds new records for its grace
   period once: stream.alignment).
Also Redis calls, commands and script µs per event, worker CPU seconds per 1k events,
and worker RSS at start and end.
"""

from __future__ import annotations

import asyncio
import os
import runpy
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.latency_floor import LatencyFloor
from bench.mix import synthetic_mix
from bench.scrape import decided, histogram, last_decided, metrics_text, quantile
from stream import kafka_io
from stream.errors import ServiceError
from stream.settings import Settings, TopicNames, to_env
from stream.topics import INPUT_TOPIC_MAX_BYTES, create_control_topics, create_topics

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# Seconds of traffic at the latency phase's rate before it is measured.
WARM_UP_S = 3.0


@dataclass
class BenchResult:
    events: int
    baseline_eps: float
    faust_floor_eps: float  # faust with agents that do nothing: its own dispatch cost
    faust_floor_cpu_s_per_1k_events: float
    # The same runner and pipeline on a plain aiokafka consumer (no faust, no merge)
    direct_eps: float
    direct_cpu_s_per_1k_events: float
    throughput_eps: float
    ratio: float  # worker / plain pass-through
    worker_to_direct: float  # worker / the same pipeline on a plain consumer: faust's cost
    offered_eps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    redis_calls_per_event: float
    redis_commands_per_event: float
    cpu_s_per_1k_events: float  # from the first decision on: start-up is not per event
    worker_start_cpu_s: float  # CPU the worker spent before its first decision
    rss_start_mb: float
    rss_end_mb: float
    latency_seconds: float
    interpreter: str  # version and build (PGO/LTO or plain): it moves CPU figures
    # Redis' script time (EVALSHA usec from INFO commandstats) per event in the throughput phase
    redis_us_per_event: float
    machine: str  # CPUs and model: figures compare only within one run or one machine
    date: str  # UTC, when the run ended
    # The floor again with batch delivery (stream.batch_delivery), and whether
    # the worker measured above ran with it (FRAUD_BATCH_DELIVERY).
    faust_batch_floor_eps: float = 0.0
    faust_batch_floor_cpu_s_per_1k_events: float = 0.0
    batch_delivery: bool = False
    # A plain consumer's record age over the latency phase (bench.latency_floor):
    # Kafka, the producer and the machine's load without a worker.
    floor_p50_ms: float = 0.0
    floor_p99_ms: float = 0.0


def interpreter_build() -> str:
    """This interpreter's version and whether it is an optimised build, by
    the same test scripts/setup uses to choose one."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "python_build.py"
    name, why = runpy.run_path(str(script))["verdict"]()
    return f"{sys.version.split()[0]} {name} ({why})"


def machine() -> str:
    """CPU count and model name, from /proc/cpuinfo where there is one."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} x {model}"


def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICKS
    rss_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return cpu, rss_pages * PAGE / 1e6


async def _redis_calls(url: str) -> tuple[float, float, float]:
    """Script calls, other commands and script µs so far, from Redis' commandstats."""
    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    scripts = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall")
    calls = sum(float(v.get("calls", 0)) for k, v in stats.items() if k in scripts)
    usec = sum(float(v.get("usec", 0)) for k, v in stats.items() if k in scripts)
    commands = sum(
        float(v.get("calls", 0))
        for k, v in stats.items()
        if k not in ("cmdstat_info", *scripts)
    )
    return calls, commands, usec


async def passthrough(settings: Settings, inputs: list[str], out: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        *inputs,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"bench-pt-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, max_batch_size=256 * 1024
    )
    await consumer.start()
    await producer.start()
    seen, first = 0, 0.0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=1000)
            for messages in batch.values():
                for m in messages:
                    first = first or time.perf_counter()
                    await producer.send(out, m.value, key=m.key)
                    seen += 1
        await producer.flush()
        return n / (time.perf_counter() - first)
    finally:
        await consumer.stop()
        await producer.stop()


async def _produce(settings: Settings, records: list[tuple[str, bytes | None, bytes]]) -> None:
    by_topic: dict[str, list[tuple[bytes | None, bytes | None]]] = {}
    for topic, key, value in records:
        by_topic.setdefault(topic, []).append((key, value))
    for topic, pairs in by_topic.items():
        await kafka_io.produce(settings.kafka_bootstrap, topic, pairs)


async def _offer(
    settings: Settings, records: list[tuple[str, bytes | None, bytes]], rate: float
) -> float:
    """Send at a fixed rate (10 ms ticks); returns the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=2)
    await producer.start()
    started = time.perf_counter()
    try:
        for i, (topic, key, value) in enumerate(records):
            due = started + i / rate
            delay = due - time.perf_counter()
            if delay > 0.01:
                await asyncio.sleep(delay)
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


def _events(
    settings: Settings, n: int, start_ms: int, ids: str = "", step_ms: float = 10.0
) -> list[tuple[str, bytes | None, bytes]]:
    return [
        (settings.topics.input_name(r.topic), r.key, r.value or b"")
        for r in synthetic_mix(n, start_ms, ids=ids, step_ms=step_ms)
    ]


@dataclass(frozen=True, slots=True)
class _Span:
    first: float  # wall time the first decision was seen
    last: float  # wall time of the worker's batch that reached the target
    decided_at_first: float  # records already decided when the first was seen
    cpu_at_first: float  # the worker's CPU seconds then


async def _wait_decided(port: int, target: float, timeout_s: float, pid: int = 0) -> _Span:
    """From the worker's first decision to its decision on record `target`.
    Polls fast until the first decision, then slowly: rendering /metrics
    costs the worker CPU (5 % of its samples at 20 polls/s); the end time
    comes from the worker's own last-batch gauge, not the poll."""
    first, done_first, cpu_first = 0.0, 0.0, 0.0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            text = metrics_text(port)
        except OSError:  # the worker's web server is not up yet
            await asyncio.sleep(0.2)
            continue
        done = decided(text)
        if done > 0 and not first:
            first, done_first = time.time(), done
            cpu_first = _proc_cpu_rss(pid)[0] if pid else 0.0
        if done >= target:
            return _Span(first, last_decided(text), done_first, cpu_first)
        await asyncio.sleep(0.25 if first else 0.02)
    raise ServiceError("bench", f"worker did not decide {target:.0f} events in {timeout_s}s")


async def run_bench(
    settings: Settings, events: int, latency_s: float, log_dir: Path, base_env: dict[str, str]
) -> BenchResult:
    tag = uuid.uuid4().hex[:8]
    topics = TopicNames().with_suffix(f"-bench-{tag}")
    run = settings.replace(
        topics=topics,
        app_id=f"fraudstream-bench-{tag}",
        redis_namespace=f"bench-{tag}",
        data_dir=log_dir / f"bench-data-{tag}",
    )
    inputs = list(topics.inputs().values())
    await create_topics(run.kafka_bootstrap, inputs, run.dev_partitions, INPUT_TOPIC_MAX_BYTES)
    await create_topics(
        run.kafka_bootstrap, [*topics.outputs(), f"bench-pt-{tag}"], run.dev_partitions
    )
    await create_control_topics(run)  # the worker decides nothing before it has read it
    now_ms = int(time.time() * 1000)
    await _produce(run, _events(run, events, now_ms - 3_600_000))
    baseline = await passthrough(run, inputs, f"bench-pt-{tag}", events)
    print(f"  baseline pass-through: {baseline:,.0f} events/s", flush=True)
    env = {**base_env, **_env(run)}
    floor = await reporting_run("floor", events, env, log_dir / f"bench-floor-{tag}.log")
    print(f"  faust floor (no-op agents): {floor['eps']:,.0f} events/s", flush=True)
    batch_log = log_dir / f"bench-floor-batch-{tag}.log"
    batch_floor = await reporting_run("floor-batch", events, env, batch_log)
    print(f"  faust floor, batch delivery: {batch_floor['eps']:,.0f} events/s", flush=True)
    direct = await reporting_run("direct", events, env, log_dir / f"bench-direct-{tag}.log")
    print(f"  pipeline on plain aiokafka: {direct['eps']:,.0f} events/s", flush=True)

    log = open(log_dir / f"bench-worker-{tag}.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "stream.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        calls0, commands0, usec0 = await _redis_calls(run.redis_url)
        span = await _wait_decided(run.web_port, events, 600, worker.pid)
        # Records decided after the first poll that saw one, over the time they took.
        throughput = (events - span.decided_at_first) / max(span.last - span.first, 1e-9)
        calls1, commands1, usec1 = await _redis_calls(run.redis_url)
        cpu, rss_start = _proc_cpu_rss(worker.pid)
        cpu_per_event = (cpu - span.cpu_at_first) / max(events - span.decided_at_first, 1.0)
        print(f"  fraudstream: {throughput:,.0f} events/s", flush=True)
        offered = max(throughput * 0.5, 1.0)
        warm = _events(
            run, int(offered * WARM_UP_S), int(time.time() * 1000), "warm-", 1000 / offered
        )
        await _offer(run, warm, offered)
        await _wait_decided(run.web_port, events + len(warm), 120)
        before = histogram(metrics_text(run.web_port), "fraud_event_to_decision_seconds")
        # Fresh ids: the same ids as the load phase would be judged as
        # redeliveries (duplicates), which is not what a latency test measures.
        # Event time follows the offer's own pace, as live traffic's follows
        # the wall clock: compressed 10-30x like the backlog's, one wall second
        # of lag would be minutes of event time and the merge would hold
        # records for the slack (stream.alignment) as it does in a backlog.
        floor_watch = LatencyFloor(run.kafka_bootstrap, inputs)
        await floor_watch.start()
        n_latency = int(offered * latency_s)
        extra = _events(run, n_latency, int(time.time() * 1000), ids="lat-", step_ms=1000 / offered)
        took = await _offer(run, extra, offered)
        floor_p50, _, floor_p99 = await floor_watch.stop(len(extra))
        print(f"  latency floor (plain consumer): p50 {floor_p50} ms, p99 {floor_p99} ms")
        await _wait_decided(run.web_port, events + len(warm) + len(extra), 120)
        after = histogram(metrics_text(run.web_port), "fraud_event_to_decision_seconds")
        _, rss_end = _proc_cpu_rss(worker.pid)
    finally:
        worker.terminate()
        worker.wait(60)
    return BenchResult(
        events=events,
        baseline_eps=round(baseline),
        faust_floor_eps=round(floor["eps"]),
        faust_floor_cpu_s_per_1k_events=round(floor["cpu_s_per_1k_events"], 3),
        direct_eps=round(direct["eps"]),
        direct_cpu_s_per_1k_events=round(direct["cpu_s_per_1k_events"], 3),
        throughput_eps=round(throughput),
        ratio=round(throughput / baseline, 3),
        worker_to_direct=round(throughput / max(direct["eps"], 1e-9), 3),
        offered_eps=round(len(extra) / took),
        p50_ms=round(quantile(0.5, before, after) * 1000, 1),
        p95_ms=round(quantile(0.95, before, after) * 1000, 1),
        p99_ms=round(quantile(0.99, before, after) * 1000, 1),
        redis_calls_per_event=round((calls1 - calls0) / events, 4),
        redis_commands_per_event=round((commands1 - commands0) / events, 2),
        cpu_s_per_1k_events=round(cpu_per_event * 1000, 3),
        worker_start_cpu_s=round(span.cpu_at_first, 2),
        rss_start_mb=round(rss_start, 1),
        rss_end_mb=round(rss_end, 1),
        latency_seconds=round(took, 1),
        interpreter=interpreter_build(),
        redis_us_per_event=round((usec1 - usec0) / events, 2),
        machine=machine(),
        date=time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()),
        faust_batch_floor_eps=round(batch_floor["eps"]),
        faust_batch_floor_cpu_s_per_1k_events=round(batch_floor["cpu_s_per_1k_events"], 3),
        batch_delivery=run.batch_delivery,
        floor_p50_ms=floor_p50,
        floor_p99_ms=floor_p99,
    )


async def reporting_run(
    command: str, events: int, env: dict[str, str], log_path: Path
) -> dict[str, float]:
    """Run `python -m bench floor` or `direct` over the pre-loaded
    records (each in its own consumer group, so the worker still starts from
    the beginning) and read the one JSON line it prints; the process is
    always gone on return. It inherits this process's working directory and
    environment, which is how `bench` (not installed) is importable here."""
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench",
            command,
            str(events),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        try:
            return await asyncio.wait_for(_report(proc, log_path), 600)
        except TimeoutError as exc:
            raise ServiceError("bench", f"{command} took over 600 s; see {log_path}") from exc
        finally:
            await _stop(proc)


async def _report(proc: asyncio.subprocess.Process, log_path: Path) -> dict[str, float]:
    """The first line of the run's stdout that is its JSON report (a library
    may print something first)."""
    assert proc.stdout is not None
    async for line in proc.stdout:
        if line.startswith(b"{"):
            try:
                report: dict[str, float] = orjson.loads(line)
                return report
            except orjson.JSONDecodeError:
                continue
    raise ServiceError("bench", f"the run ended without a report; see {log_path}")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def _env(settings: Settings) -> dict[str, str]:
    return {**to_env(settings), "FRAUD_LOG_LEVEL": "WARNING"}


def report(result: BenchResult) -> str:
    rows = [(k, v) for k, v in asdict(result).items()]
    return "\n".join(f"  {k:<32} {v}" for k, v in rows)


def dumps(result: BenchResult) -> bytes:
    data: dict[str, Any] = asdict(result)
    return orjson.dumps(data, option=orjson.OPT_INDENT_2)
