"""`fraudstream backtest`: replay a JSONL file of events through the same
decoding, validation, store and rule code as the live worker, against real
Redis in a scratch namespace that is removed afterwards.

Input lines: {"topic": "<input topic>", "value": {event}}. Output lines:
{"topic": "<output topic>", "value": {...}}, invalid inputs included as
`fraud-dlq` records.

Each line is judged exactly once, in file order, and nothing is redelivered,
so the backtest needs no delivered watermark (stream.delivery): the live
worker keeps one only so that a redelivered record is not judged twice,
which is what makes its decisions equal these.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from detectors.control_effects import BLOCK_LIST_RULE
from detectors.control_snapshot import EMPTY, ControlSnapshot
from detectors.events import Topic
from detectors.money import format_minor
from detectors.rulebook import Rulebook
from stream.codec import DeadLetter, Incoming, SourceRecord
from stream.overlap import OverlappedBatches
from stream.pipeline import BatchResult, OutputRecord, Pipeline, dead_letter_output
from stream.settings import Settings
from stream.store_wiring import open_store

__all__ = ["BACKTEST_SOURCE", "BacktestSummary", "RuleSummary", "run_backtest"]

BACKTEST_SOURCE = "backtest-input"


@dataclass(slots=True)
class RuleSummary:
    hits: int = 0
    entities: set[str] = field(default_factory=set)
    freezes: int = 0
    # Held by single-payout freezes, per currency (never added across currencies).
    held_minor: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class BacktestSummary:
    events: int = 0
    dead_letters: int = 0
    outputs: int = 0
    seconds: float = 0.0
    rules: dict[str, RuleSummary] = field(default_factory=dict)
    namespace: str = ""  # the scratch namespace (removed unless kept)
    ruleset: str = ""  # which rule set decided: its ruleset_version and where it came from

    def table(self) -> str:
        w = max([36, *(len(r) for r in self.rules)])
        lines = [f"{'rule':<{w}} {'hits':>6} {'entities':>9} {'freezes':>8} {'held':>18}"]
        for rule_id, s in sorted(self.rules.items()):
            held = "; ".join(format_minor(a, c) for c, a in sorted(s.held_minor.items())) or "-"
            lines.append(
                f"{rule_id:<{w}} {s.hits:>6} {len(s.entities):>9} {s.freezes:>8} {held:>18}"
            )
        rate = self.events / self.seconds if self.seconds else 0.0
        lines.append(
            f"{self.events} events, {self.dead_letters} dead-lettered, "
            f"{self.outputs} outputs in {self.seconds:.2f}s ({rate:,.0f} events/s)"
        )
        if self.ruleset:
            lines.append(self.ruleset)
        return "\n".join(lines)


def _topic_lookup(settings: Settings) -> dict[str, Topic]:
    lookup = {t.value: t for t in Topic}
    lookup.update({name: t for t, name in settings.topics.inputs().items()})
    return lookup


def _records(path: Path, settings: Settings) -> Iterator[tuple[Topic | None, SourceRecord]]:
    lookup = _topic_lookup(settings)
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
                topic = lookup[doc["topic"]]
                value = orjson.dumps(doc["value"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                yield None, SourceRecord(BACKTEST_SOURCE, 0, line_no, None, line.rstrip(b"\n"), 0)
                continue
            key = doc["value"].get("merchant_id") if isinstance(doc["value"], dict) else None
            name = settings.topics.input_name(topic)
            yield (
                topic,
                SourceRecord(name, 0, line_no, str(key).encode() if key else None, value, 0),
            )


async def run_backtest(
    settings: Settings,
    rulebook: Rulebook,
    events: Path,
    out: Path,
    progress: IO[str] | None,
    keep_namespace: bool = False,
    control: ControlSnapshot = EMPTY,
) -> BacktestSummary:
    """`keep_namespace`: leave the scratch state in Redis for inspection
    (tests that examine what the store wrote); its name is in the summary.
    `control`: a saved control snapshot (`control show --json`) steering
    every decision as it steers the live worker."""
    namespace = f"{settings.redis_namespace}-bt-{uuid.uuid4().hex[:12]}"
    if settings.key_hash_secret is None:
        # The scratch state is the run's own: a secret for this run only.
        settings = settings.replace(key_hash_secret=secrets.token_urlsafe(32))
    store = open_store(settings, namespace=namespace)
    await store.start()
    pipeline = Pipeline(settings, store, rulebook)
    pipeline.control = control  # its ruleset record, if any, replaces `rulebook`
    rules = pipeline.rules()
    summary = BacktestSummary(
        rules={r.rule_id: RuleSummary() for r in rules.rulebook.rules},
        namespace=namespace,
        ruleset=f"ruleset_version {rules.version} ({rules.rulebook.name} "
        f"{rules.rulebook.version}, from {rules.source.origin})",
    )
    started = time.perf_counter()
    flusher: OverlappedBatches | None = None
    try:
        with out.open("wb") as sink:

            async def written(result: BatchResult, records: int) -> None:
                _record(pipeline, result, sink, summary)

            flusher = OverlappedBatches(pipeline, written)
            await _feed(flusher, events, settings, sink, summary, progress)
    except BaseException:
        if flusher is not None:
            flusher.cancel()
        raise
    finally:
        summary.seconds = time.perf_counter() - started
        if not keep_namespace:
            await store.drop_namespace()
        await store.close()
    return summary


async def _feed(
    flusher: OverlappedBatches,
    events: Path,
    settings: Settings,
    sink: IO[bytes],
    summary: BacktestSummary,
    progress: IO[str] | None,
) -> None:
    """Submit the file's records in batches, then wait for the last one; a
    line that is no input record goes straight to the output, dead-lettered."""
    started = time.perf_counter()
    batch: list[Incoming] = []
    for topic, record in _records(events, settings):
        summary.events += 1
        if topic is None:
            _write_bad_line(sink, settings, record, summary)
            continue
        batch.append(Incoming.read(topic, record, settings.max_event_bytes))
        if len(batch) >= settings.batch_max:
            await flusher.submit(batch)
            batch = []
        if progress and summary.events % 10_000 == 0:
            rate = summary.events / (time.perf_counter() - started)
            print(f"  {summary.events:,} events ({rate:,.0f}/s)", file=progress, flush=True)
    if batch:
        await flusher.submit(batch)
    await flusher.drain()


def _record(
    pipeline: Pipeline, result: BatchResult, sink: IO[bytes], summary: BacktestSummary
) -> None:
    summary.dead_letters += len(result.dead_letters)
    alerts_topic = pipeline.settings.topics.alerts
    for o in result.outputs:
        _write(sink, o, summary)
        if o.topic == alerts_topic:
            value = orjson.loads(o.value)
            per_rule = summary.rules.setdefault(value["rule_id"], RuleSummary())
            per_rule.entities.add(value["entity_id"])
            if value["rule_id"] == BLOCK_LIST_RULE:  # one alert per event, no incident
                per_rule.hits += 1
    for rule in result.alerts_new:
        summary.rules[rule.rule_id].hits += 1
    for f in result.freezes:
        s = summary.rules[f.rule_id]
        s.freezes += 1
        if f.amount_minor is not None and f.currency is not None:
            s.held_minor[f.currency] = s.held_minor.get(f.currency, 0) + f.amount_minor


def _write(sink: IO[bytes], output: OutputRecord, summary: BacktestSummary) -> None:
    value: Any = orjson.loads(output.value)
    sink.write(orjson.dumps({"topic": output.topic, "value": value}) + b"\n")
    summary.outputs += 1


def _write_bad_line(
    sink: IO[bytes], settings: Settings, record: SourceRecord, summary: BacktestSummary
) -> None:
    letter = DeadLetter(
        record, "invalid_json", 'line is not {"topic": <input topic>, "value": {...}}'
    )
    _write(sink, dead_letter_output(letter, settings, int(time.time() * 1000)), summary)
    summary.dead_letters += 1
