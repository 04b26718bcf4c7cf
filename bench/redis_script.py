"""`python -m bench redis`: what the Redis scripts cost per event, on Redis' side.

The worker's pipeline with the default catalogue (or FRAUD_RULES_FILE) on the
real RedisStore, fed the synthetic mix (bench/mix.py) directly, without
Kafka: warm-up events first (so windows hold state, as in a running
worker), then `CONFIG RESETSTAT`, then the measured events. The figures come
from Redis' own `INFO commandstats`: EVALSHA (or FCALL) µs per event and the
commands per event, split per script (a snapshot around every aggregate
call; the rest are the incident and guardrail scripts) and per command
inside them. Store calls are made one batch after another (no overlap), so
every snapshot covers one call.

By default a private redis-server on a free port, without persistence, is
started and stopped: nothing else's keys or commands land in the figures.
`--redis-url` measures an existing Redis instead (its commandstats are reset).

`--health-cost ROUNDS` prices merchant health instead: the same events with
the rule file as it is and without its `health` section, alternating,
ROUNDS times each; per variant the Redis µs (every command, scripts and
plain) and commands per event, and the pipeline's own wall µs per event
(store calls one at a time, so Redis' time is inside it too). The
difference is what health costs; only the ratio within one run means
anything on a machine whose speed varies.

`--counted-cost ROUNDS` prices the counted events' rings the same way:
FRAUD_COUNTED_EVENTS 0 against the settings' value (default 20).

`--callgrind` runs the private Redis under valgrind and adds the
instructions it executed per measured event: repeatable where µs are not
(bench/redis_server.py says how to use it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import secrets
import statistics
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

from bench.live import interpreter_build
from bench.mix import synthetic_mix
from bench.redis_server import callgrind_redis, private_redis
from detectors.rulebook import Rulebook
from stream.codec import Incoming, SourceRecord
from stream.gc_tuning import tune_for_streaming
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store.base import EventObservations, EventRequests
from stream.store_wiring import open_store

SCRIPT_CALLS = ("cmdstat_evalsha", "cmdstat_eval", "cmdstat_fcall", "cmdstat_fcall_ro")
NOT_SCRIPT = ("cmdstat_info", "cmdstat_config", "cmdstat_ping", *SCRIPT_CALLS)
START_MS = 1_790_000_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=20_000, help="measured events")
    parser.add_argument("--warmup", type=int, default=10_000, help="events before the reset")
    parser.add_argument("--redis-url", help="an existing Redis (default: a private one)")
    parser.add_argument(
        "--health-cost",
        type=int,
        metavar="ROUNDS",
        help="price merchant health: with and without the `health` section, alternating",
    )
    parser.add_argument(
        "--counted-cost",
        type=int,
        metavar="ROUNDS",
        help="price the counted events' rings: FRAUD_COUNTED_EVENTS 0 and as set, alternating",
    )
    parser.add_argument("--json", help="with a --*-cost mode: write every run's figures here")
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="run the private Redis under valgrind and count its instructions per measured event",
    )


Stats = dict[str, dict[str, float]]


def _delta(after: Stats, before: Stats) -> Stats:
    out: Stats = {}
    for name, row in after.items():
        prev = before.get(name, {})
        calls = row.get("calls", 0.0) - prev.get("calls", 0.0)
        if calls > 0:
            out[name] = {
                "calls": calls,
                "usec": row.get("usec", 0.0) - prev.get("usec", 0.0),
            }
    return out


def _add(total: Stats, part: Stats) -> None:
    for name, row in part.items():
        acc = total.setdefault(name, {"calls": 0.0, "usec": 0.0})
        acc["calls"] += row["calls"]
        acc["usec"] += row["usec"]


@dataclass
class _Recorder:
    """Commandstats deltas around every aggregate call."""

    client: Any
    aggregates: Stats = field(default_factory=dict)

    async def snapshot(self) -> Stats:
        stats = await self.client.info("commandstats")
        return {k: {"calls": float(v["calls"]), "usec": float(v["usec"])} for k, v in stats.items()}


class _MeasuredStore:
    """The RedisStore with its aggregate calls measured; everything else passes through."""

    def __init__(self, store: Any, recorder: _Recorder) -> None:
        self._store = store
        self._recorder = recorder
        self.measuring = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def apply(
        self, events: Sequence[EventRequests], after: asyncio.Event | None = None
    ) -> list[EventObservations]:
        if not self.measuring:
            return list(await self._store.apply(events, after))
        before = await self._recorder.snapshot()
        out = await self._store.apply(events, after)
        _add(self._recorder.aggregates, _delta(await self._recorder.snapshot(), before))
        return list(out)


def _records(settings: Settings, n: int, start_ms: int, ids: str) -> list[Incoming]:
    """The mix as Kafka would deliver it: keyed by merchant onto the dev
    partitions, offsets counting per partition."""
    parts = settings.dev_partitions
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for r in synthetic_mix(n, start_ms, ids=ids):
        name = settings.topics.input_name(r.topic)
        partition = zlib.crc32(r.key or b"") % parts
        offset = offsets[(name, partition)] = offsets.get((name, partition), -1) + 1
        record = SourceRecord(name, partition, offset, r.key, r.value, 0)
        out.append(Incoming.read(r.topic, record, settings.max_event_bytes))
    return out


def _batches(items: list[Incoming], size: int) -> Iterator[list[Incoming]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def _cpu_s(client: Any) -> float:
    """The Redis server's CPU seconds so far (user + system, all threads)."""
    cpu = await client.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _run(
    settings: Settings,
    args: argparse.Namespace,
    rulebook: Rulebook | None = None,
    counting: Callable[[bool], None] | None = None,
) -> tuple[Stats, Stats, float, float]:
    """Commandstats of the measured events (all, and the aggregate calls'),
    the wall seconds they took and the Redis server's CPU seconds.
    `counting`: switched on and off around the measured events."""
    namespace = f"bench-redis-{secrets.token_hex(4)}"
    store = open_store(settings, namespace=namespace)
    await store.start()
    client = aioredis.Redis.from_url(settings.redis_url)
    recorder = _Recorder(client)
    measured = _MeasuredStore(store, recorder)
    pipeline = Pipeline(settings, measured, rulebook or load_rulebook(settings))
    records = _records(settings, args.warmup + args.events, START_MS, "")
    now_ms = START_MS + 10 * len(records)
    try:
        for batch in _batches(records[: args.warmup], settings.batch_max):
            await pipeline.execute(pipeline.prepare(batch, now_ms), now_ms)
        await client.config_resetstat()
        measured.measuring = True
        if counting:
            counting(True)
        cpu_before = await _cpu_s(client)
        started = time.perf_counter()
        for batch in _batches(records[args.warmup :], settings.batch_max):
            await pipeline.execute(pipeline.prepare(batch, now_ms), now_ms)
        seconds = time.perf_counter() - started
        if counting:
            counting(False)
        cpu = await _cpu_s(client) - cpu_before
        total = _delta(await recorder.snapshot(), {})
    finally:
        await store.drop_namespace()
        await store.close()
        await client.aclose()
    return total, recorder.aggregates, seconds, cpu


def _script_usec(stats: Stats) -> tuple[float, float]:
    calls = sum(stats.get(k, {}).get("calls", 0.0) for k in SCRIPT_CALLS)
    usec = sum(stats.get(k, {}).get("usec", 0.0) for k in SCRIPT_CALLS)
    return calls, usec


def _commands(stats: Stats) -> float:
    return sum(row["calls"] for k, row in stats.items() if k not in NOT_SCRIPT)


def report(total: Stats, aggregates: Stats, events: int, seconds: float) -> str:
    calls, usec = _script_usec(total)
    agg_calls, agg_usec = _script_usec(aggregates)
    lines = [
        f"interpreter: {interpreter_build()}",
        f"events measured: {events} in {seconds:.2f}s ({events / seconds:,.0f} events/s, "
        "store calls one at a time)",
        f"script µs per event (EVALSHA/FCALL): {usec / events:.2f}",
        f"Redis commands per event (inside scripts and plain): {_commands(total) / events:.2f}",
        f"script calls per event: {calls / events:.4f}",
        "per script:",
        f"  aggregates: {agg_usec / events:.2f} µs per event, {agg_calls:.0f} calls, "
        f"{_commands(aggregates) / events:.2f} commands per event",
        f"  others (incidents, guardrails): {(usec - agg_usec) / events:.2f} µs per event, "
        f"{calls - agg_calls:.0f} calls, "
        f"{(_commands(total) - _commands(aggregates)) / events:.2f} commands per event",
        "aggregates script, per command (calls and µs per event):",
    ]
    inner = 0.0
    for name, row in sorted(aggregates.items(), key=lambda kv: -kv[1]["usec"]):
        if name in NOT_SCRIPT:
            continue
        inner += row["usec"]
        lines.append(
            f"  {name.removeprefix('cmdstat_'):<18} {row['calls'] / events:7.2f} "
            f"{row['usec'] / events:8.2f}"
        )
    lines.append(
        f"  {'(script itself)':<18} {'':7} {(agg_usec - inner) / events:8.2f}"
        "  Lua, argument decoding, call overhead"
    )
    return "\n".join(lines)


def run(settings: Settings, args: argparse.Namespace) -> int:
    tune_for_streaming()
    if settings.key_hash_secret is None:
        settings = settings.replace(key_hash_secret=secrets.token_urlsafe(32))
    if args.callgrind:
        return _instructions(settings, args)
    with private_redis() if args.redis_url is None else _given(args.redis_url) as url:
        settings = settings.replace(redis_url=url)
        if args.health_cost:
            print(_health_cost(settings, args))
            return 0
        if args.counted_cost:
            print(_counted_cost(settings, args))
            return 0
        total, aggregates, seconds, _ = asyncio.run(_run(settings, args))
    print(report(total, aggregates, args.events, seconds))
    return 0


def _instructions(settings: Settings, args: argparse.Namespace) -> int:
    """The usual report, from a Redis under callgrind, and the instructions
    it executed per measured event (bench/redis_server.py)."""
    if args.health_cost or args.counted_cost or args.redis_url:
        raise SystemExit("--callgrind runs alone, on its own private Redis")
    with callgrind_redis() as (url, counter):
        settings = settings.replace(redis_url=url)
        total, aggregates, seconds, _ = asyncio.run(_run(settings, args, counting=counter.counting))
    print(report(total, aggregates, args.events, seconds))
    per_event = counter.total / args.events
    print(f"Redis instructions per event (callgrind, whole server): {per_event:,.0f}")
    return 0


def _health_cost(settings: Settings, args: argparse.Namespace) -> str:
    """Alternating runs with and without the rule file's `health` section."""
    scored = load_rulebook(settings)
    if scored.health is None:
        raise SystemExit("the rule file has no `health` section to price")
    variants = {
        "without health": (settings, dataclasses.replace(scored, health=None)),
        "with health": (settings, scored),
    }
    return _alternate(variants, args, args.health_cost, "health costs")


def _counted_cost(settings: Settings, args: argparse.Namespace) -> str:
    """Alternating runs without and with the counted events' rings."""
    size = settings.counted_events or 20
    book = load_rulebook(settings)
    variants = {
        "no rings": (settings.replace(counted_events=0), book),
        f"rings of {size}": (settings.replace(counted_events=size), book),
    }
    return _alternate(variants, args, args.counted_cost, "rings cost")


def _alternate(
    variants: dict[str, tuple[Settings, Rulebook]],
    args: argparse.Namespace,
    rounds: int,
    label: str,
) -> str:
    """Each variant once per round, in turn; medians per variant and the
    second's cost over the first."""
    # Per variant, each run's (Redis CPU µs, commands, pipeline wall µs) per event.
    rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, (settings, rulebook) in variants.items():
            total, _, seconds, cpu = asyncio.run(_run(settings, args, rulebook))
            n = args.events
            rows[name].append((cpu * 1e6 / n, _commands(total) / n, seconds * 1e6 / n))
    lines = [
        f"interpreter: {interpreter_build()}",
        f"{args.events} events per run, {rounds} alternating rounds; medians:",
        f"{'variant':<16} {'Redis CPU µs/ev':>15} {'commands/event':>15} {'pipeline µs/event':>18}",
    ]
    medians = {}
    for name, runs in rows.items():
        medians[name] = [statistics.median(r[i] for r in runs) for i in range(3)]
        redis_us, commands, wall = medians[name]
        lines.append(f"{name:<16} {redis_us:>15.1f} {commands:>15.2f} {wall:>18.1f}")
    if args.json:
        doc = {"interpreter": interpreter_build(), "events": args.events, "runs": rows}
        with open(args.json, "wb") as fh:
            fh.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    a, b = (medians[name] for name in variants)
    lines.append(
        f"{label:<16} {b[0] - a[0]:>+15.1f} {b[1] - a[1]:>+15.2f} {b[2] - a[2]:>+18.1f}"
        f"   (ratios {b[0] / a[0]:.2f}, {b[1] / a[1]:.2f}, {b[2] / a[2]:.2f})"
    )
    return "\n".join(lines)


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url
