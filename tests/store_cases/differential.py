"""The simulator's traffic through the pipeline on one store, recorded, and
the differences between two such runs: the decisions (alert ids, freezes)
and what the store observed for every event."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from detectors.events import Topic
from stream.codec import Incoming, SourceRecord
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.simulation import SimulationConfig, simulate
from stream.store.base import (
    EventObservations,
    EventRequests,
    EventStatus,
    EventStore,
    IncidentClaim,
    IncidentOutcome,
)
from stream.store.counters import CounterReader
from stream.store.guard_counters import GuardCounters
from stream.store.health_ledger import HealthLedger
from stream.store.payouts import PayoutBook

Traffic = list[tuple[Topic, SourceRecord]]


def simulated_traffic(config: SimulationConfig) -> tuple[Traffic, int]:
    """The simulated events as input records, in event-time order, and a
    `now` just after the last of them."""
    result = simulate(config)
    traffic: Traffic = []
    for offset, line in enumerate(result.jsonl().splitlines()):
        doc = orjson.loads(line)
        topic, value = Topic(doc["topic"]), doc["value"]
        key = str(value.get("merchant_id", "")).encode() or None
        traffic.append((topic, SourceRecord(topic.value, 0, offset, key, orjson.dumps(value), 0)))
    return traffic, config.end_ms + 60_000


def disordered(traffic: Traffic, seed: int, run: int = 500) -> Traffic:
    """The same records arriving out of order: shuffled within runs of `run`
    records (a few hours of event time, so some arrive beyond the allowed
    lateness), a tenth of each run delivered again at its own positions
    (duplicates, republished alerts), and at the end a few from days before
    (older than the duplicate horizon)."""
    rng = random.Random(seed)
    out: Traffic = []
    for start in range(0, len(traffic), run):
        chunk = traffic[start : start + run]
        chunk += rng.sample(chunk, len(chunk) // 10)
        rng.shuffle(chunk)
        out += chunk
    return out + rng.sample(traffic, len(traffic) // 50)


class Recording:
    """An EventStore that passes everything to another and keeps what it answered."""

    def __init__(self, inner: EventStore) -> None:
        self._inner = inner
        self.observed: list[tuple[str, EventObservations]] = []

    async def start(self) -> None:
        await self._inner.start()

    async def close(self) -> None:
        await self._inner.close()

    async def ping(self) -> bool:
        return await self._inner.ping()

    async def apply(
        self, events: Sequence[EventRequests], after: asyncio.Event | None = None
    ) -> list[EventObservations]:
        observed = await self._inner.apply(events, after)
        self.observed += [(e.event_id, o) for e, o in zip(events, observed, strict=True)]
        return observed

    async def claim_incidents(self, claims: Sequence[IncidentClaim]) -> list[IncidentOutcome]:
        return await self._inner.claim_incidents(claims)

    def guard_counters(self) -> GuardCounters:
        return self._inner.guard_counters()

    def payout_book(self) -> PayoutBook:
        return self._inner.payout_book()

    def health_ledger(self) -> HealthLedger:
        return self._inner.health_ledger()

    def counters(self) -> CounterReader:
        return self._inner.counters()


@dataclass
class Run:
    observed: list[tuple[str, EventObservations]] = field(default_factory=list)
    alert_ids: list[str] = field(default_factory=list)
    freezes: list[bytes] = field(default_factory=list)

    def statuses(self) -> Counter[EventStatus]:
        return Counter(o.status for _, o in self.observed)

    def counts(self) -> str:
        statuses = {s.name: n for s, n in self.statuses().items()}
        late = sum(1 for _, o in self.observed for v in o.values.values() if v.value is None)
        return (
            f"{len(self.observed)} events observed ({statuses}, "
            f"{late} values too late), {len(self.alert_ids)} alerts, {len(self.freezes)} freezes"
        )


async def run_traffic(settings: Settings, store: EventStore, traffic: Traffic, now_ms: int) -> Run:
    recording = Recording(store)
    pipeline = Pipeline(settings, recording, load_rulebook(settings))
    run = Run(recording.observed)
    freeze_topics = {settings.topics.fund_freezes, settings.topics.benefit_freezes}
    for start in range(0, len(traffic), settings.batch_max):
        batch = traffic[start : start + settings.batch_max]
        items = [Incoming.read(t, r, settings.max_event_bytes) for t, r in batch]
        result = await pipeline.process_mixed(items, now_ms)
        for o in result.outputs:
            if o.topic == settings.topics.alerts:
                run.alert_ids.append(orjson.loads(o.value)["alert_id"])
            elif o.topic in freeze_topics:
                run.freezes.append(o.value)
    return run


def differences(a: Run, b: Run, limit: int = 5) -> list[str]:
    """What differs between two runs over the same traffic: decisions, then
    the first `limit` events whose observations differ (with the aggregates
    that differ)."""
    out = []
    for name, xs, ys in (("alert id", a.alert_ids, b.alert_ids), ("freeze", a.freezes, b.freezes)):
        if xs != ys:
            at = next(
                (i for i, (x, y) in enumerate(zip(xs, ys, strict=False)) if x != y),
                min(len(xs), len(ys)),
            )
            out.append(f"{name}s: {len(xs)} vs {len(ys)}, first difference at #{at}")
    if len(a.observed) != len(b.observed):
        out.append(f"observed events: {len(a.observed)} vs {len(b.observed)}")
    events = [
        (ida, oa, idb, ob)
        for (ida, oa), (idb, ob) in zip(a.observed, b.observed, strict=False)
        if ida != idb or oa != ob
    ]
    for ida, oa, idb, ob in events[:limit]:
        aggs = sorted(
            k for k in oa.values.keys() | ob.values.keys() if oa.values.get(k) != ob.values.get(k)
        )
        out.append(f"event {ida} / {idb}: {oa.status} / {ob.status}, aggregates {aggs}")
    if len(events) > limit:
        out.append(f"... {len(events) - limit} more events observed differently")
    return out
