"""One batch of records from one input topic → the records to publish.

The single code path shared by the live worker and the backtest: decode and
validate, update and read aggregates in the store, judge rules in the pure
core, settle incidents, derive freezes, build output records. It knows
nothing of faust; the caller supplies records and the current time and
publishes the outputs.

Every step is idempotent, so the caller may retry a whole batch after any
transient failure without changing a count or an id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson

from detectors import engine
from detectors.decisions import (
    DEGRADED_TRACK,
    INCIDENT_EPOCH_MS,
    AlertCandidate,
    Freeze,
    combine_freezes,
    degrade,
    freeze_for,
    incident_base,
    incident_epoch,
)
from detectors.events import Event, Payout, Topic
from detectors.rulebook import Rulebook
from detectors.rules import ActionKind, Rule
from stream.codec import DeadLetter, Decoded, SourceRecord, decode
from stream.settings import Settings
from stream.store.base import (
    EventObservations,
    EventRequests,
    EventStatus,
    EventStore,
    IncidentClaim,
    IncidentStatus,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutputRecord:
    topic: str
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class BatchResult:
    outputs: list[OutputRecord] = field(default_factory=list)
    valid: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # (source topic name, status) → events; per topic because a batch may mix topics
    statuses: dict[tuple[str, EventStatus], int] = field(default_factory=dict)
    valid_by_topic: dict[str, int] = field(default_factory=dict)
    alerts_new: list[Rule] = field(default_factory=list)
    alerts_reemitted: list[Rule] = field(default_factory=list)
    freezes: list[Freeze] = field(default_factory=list)
    rule_failures: dict[str, int] = field(default_factory=dict)
    late_values: int = 0  # aggregate updates refused: older than window + allowed lateness
    late_by_topic: dict[str, int] = field(default_factory=dict)
    degraded: list[Rule] = field(default_factory=list)  # decisions on incomplete inputs


# Per record: the input topics not read up to its event time when it was
# released (a stalled partition); empty in the normal case.
Incomplete = Sequence[frozenset[Topic]]


@dataclass(slots=True)
class Prepared:
    result: BatchResult
    planned: list[tuple[Topic, Decoded, list[engine.GroupRequest]]]
    events: list[EventRequests]  # what the store is asked, aligned with `planned`
    incomplete: dict[int, frozenset[Topic]]  # position in `planned` → stalled topics


@dataclass(slots=True)
class _Pending:
    decoded: Decoded
    rule: Rule
    candidate: AlertCandidate
    degraded: bool = False


class Pipeline:
    def __init__(self, settings: Settings, store: EventStore, rulebook: Rulebook) -> None:
        self.settings = settings
        self._settings = settings
        self._store = store
        self.rulebook = rulebook
        self._plan = engine.Plan(rulebook)
        self._incident_retention_ms = settings.dedup_horizon_s * 1000
        # The topics whose events feed what each rule reads.
        self._reads: dict[str, frozenset[Topic]] = {
            r.rule_id: frozenset(t for spec in r.aggregates() for t in spec.topics)
            for r in rulebook.rules
        }

    async def process_mixed(
        self,
        items: Sequence[tuple[Topic, SourceRecord]],
        now_ms: int,
        decoded: Sequence[Decoded | DeadLetter] | None = None,
        incomplete: Incomplete | None = None,
    ) -> BatchResult:
        """A batch whose records may come from several input topics, in order
        (the backtest's case: a file interleaves topics line by line).
        `decoded`: the records already run through codec.decode, one per item
        (the live worker decodes once, to merge topics by event time);
        `incomplete`: per item, the stalled topics it is judged without."""
        return await self.execute(self.prepare(items, now_ms, decoded, incomplete), now_ms)

    def prepare(
        self,
        items: Sequence[tuple[Topic, SourceRecord]],
        now_ms: int,
        decoded: Sequence[Decoded | DeadLetter] | None = None,
        incomplete: Incomplete | None = None,
    ) -> Prepared:
        """The CPU-only half (decode, validate, plan the store's requests):
        no I/O, so a caller may prepare the next batch while the store works
        on this one."""
        result = BatchResult()
        valid = self._decode(items, now_ms, result, decoded)
        result.valid = len(valid)
        for _, _, d in valid:
            name = d.record.topic
            result.valid_by_topic[name] = result.valid_by_topic.get(name, 0) + 1
        plan = self._plan.requests
        indexed = [(i, t, d, reqs) for i, t, d in valid if (reqs := plan(t, d.event))]
        planned = [(t, d, reqs) for _, t, d, reqs in indexed]
        events = [
            EventRequests(d.event.event_id, d.event.occurred_at_ms, r, d.event.currency)
            for _, d, r in planned
        ]
        stalled = (
            {j: incomplete[i] for j, (i, *_) in enumerate(indexed) if incomplete[i]}
            if incomplete
            else {}
        )
        return Prepared(result, planned, events, stalled)

    async def observe(self, prepared: Prepared) -> list[EventObservations]:
        """Apply the prepared batch in the store: its one I/O-bound step."""
        return await self._store.apply(prepared.events)

    async def execute(self, prepared: Prepared, now_ms: int) -> BatchResult:
        return await self.conclude(prepared, await self.observe(prepared), now_ms)

    async def conclude(
        self, prepared: Prepared, observations: list[EventObservations], now_ms: int
    ) -> BatchResult:
        """Judge the batch on what the store observed and settle incidents."""
        result, planned = prepared.result, prepared.planned
        pending: list[_Pending] = []
        for j, ((topic, d, reqs), obs) in enumerate(zip(planned, observations, strict=True)):
            key = (d.record.topic, obs.status)
            result.statuses[key] = result.statuses.get(key, 0) + 1
            if obs.status is EventStatus.TOO_OLD:
                continue
            # Duplicates are judged too: if a crash hit between the two store
            # calls, this is the only chance to settle the incident.
            observed = obs.values
            late = _late_updates(reqs, observed)
            if late:
                result.late_values += late
                name = d.record.topic
                result.late_by_topic[name] = result.late_by_topic.get(name, 0) + late
            pending += self._judge(topic, d, observed, now_ms, result, prepared.incomplete.get(j))
        await self._settle(pending, result)
        return result

    def _decode(
        self,
        items: Sequence[tuple[Topic, SourceRecord]],
        now_ms: int,
        result: BatchResult,
        decoded: Sequence[Decoded | DeadLetter] | None,
    ) -> list[tuple[int, Topic, Decoded]]:
        skew_ms = self._settings.max_future_skew_s * 1000
        out = []
        for i, (topic, record) in enumerate(items):
            item = (
                decode(topic, record, self._settings.max_event_bytes)
                if decoded is None
                else decoded[i]
            )
            if isinstance(item, Decoded) and item.event.occurred_at_ms > now_ms + skew_ms:
                item = DeadLetter(
                    record,
                    "bad_time",
                    f"occurred_at is more than {self._settings.max_future_skew_s}s in the future",
                    "occurred_at",
                )
            if isinstance(item, DeadLetter):
                result.dead_letters.append(item)
                wire = item.to_wire(now_ms, self._settings.dlq_value_max_bytes)
                result.outputs.append(
                    OutputRecord(self._settings.topics.dlq, record.key, orjson.dumps(wire))
                )
            else:
                out.append((i, topic, item))
        return out

    def _judge(
        self,
        topic: Topic,
        d: Decoded,
        observed: dict[str, engine.Observation],
        now_ms: int,
        result: BatchResult,
        stalled: frozenset[Topic] | None,
    ) -> list[_Pending]:
        """A failing rule is recorded (metric, log), never allowed to stop the batch.
        A rule reading a `stalled` topic decides in degraded form (no freeze)."""
        out = []
        for rule in self._plan.judges[topic]:
            try:
                candidate = engine.evaluate(rule, topic, d.record.topic, d.event, observed, now_ms)
            except Exception:
                log.exception("rule %s failed on event %s", rule.rule_id, d.event.event_id)
                result.rule_failures[rule.rule_id] = result.rule_failures.get(rule.rule_id, 0) + 1
                continue
            if candidate is None:
                continue
            missing = stalled & self._reads[rule.rule_id] if stalled else None
            if missing:
                candidate = degrade(candidate, (t.value for t in missing))
            out.append(_Pending(d, rule, candidate, bool(missing)))
        return out

    async def _settle(self, pending: list[_Pending], result: BatchResult) -> None:
        """Settle incidents. A degraded decision claims an incident of its own
        track (`<rule>~degraded`): it alerts once per incident, for a human,
        never freezes, and leaves the rule's own incident to the first
        complete decision, which can then still freeze."""
        claims = [self._claim(p) for p in pending]
        outcomes = await self._store.claim_incidents(claims)
        freezes_by_event: dict[str, list[Freeze]] = {}
        for p, claim, outcome in zip(pending, claims, outcomes, strict=True):
            if outcome.status is IncidentStatus.OPEN:
                continue
            if outcome.status is IncidentStatus.NEW:
                result.alerts_new.append(p.rule)
            else:
                result.alerts_reemitted.append(p.rule)
            payload = outcome.payload or claim.payload
            alert = dataclasses.replace(p.candidate.alert, alert_id=outcome.alert_id)
            result.outputs.append(
                OutputRecord(self._settings.topics.alerts, alert.entity_id.encode(), payload)
            )
            if p.degraded:
                result.degraded.append(p.rule)
                continue  # may alert on incomplete facts, never freeze on them
            freeze = freeze_for(p.rule, alert, _merchant(p.decoded.event), _payout(p.decoded.event))
            if freeze is not None:
                freezes_by_event.setdefault(p.decoded.event.event_id, []).append(freeze)
        for freezes in freezes_by_event.values():
            for f in combine_freezes(freezes):
                result.freezes.append(f)
                topic = (
                    self._settings.topics.fund_freezes
                    if f.kind is ActionKind.FUND_FREEZE
                    else self._settings.topics.benefit_freezes
                )
                result.outputs.append(
                    OutputRecord(topic, f.subject_id.encode(), orjson.dumps(f.to_wire()))
                )

    def _claim(self, p: _Pending) -> IncidentClaim:
        alert = p.candidate.alert
        track = f"{alert.rule_id}{DEGRADED_TRACK}" if p.degraded else alert.rule_id
        return IncidentClaim(
            entity_type=p.rule.entity,
            entity_ids=p.candidate.entity_ids,
            rule_id=track,
            base=incident_base(track, alert.rule_version, p.candidate.entity_ids),
            start_ms=p.candidate.incident_start_ms,
            end_ms=p.candidate.incident_end_ms,
            cooldown_ms=p.candidate.cooldown_ms,
            trigger_event_id=p.decoded.event.event_id,
            trigger_position=p.decoded.record.position.token(),
            payload=orjson.dumps(alert.to_wire()),
            # Long enough to keep numbering incidents through an epoch.
            ttl_ms=max(self._incident_retention_ms, INCIDENT_EPOCH_MS)
            + p.candidate.cooldown_ms
            + p.rule.window_ms,
            # Keep incidents as long as a crossing could still belong to them.
            retention_ms=max(
                self._incident_retention_ms,
                p.rule.window_ms
                + p.candidate.cooldown_ms
                + self._settings.allowed_lateness_s * 1000,
            ),
            epoch=incident_epoch(p.candidate.incident_end_ms),
        )


# What to do with a concluded batch: its result and how many records it had.
OnResult = Callable[[BatchResult, int], Awaitable[None]]


class OverlappedBatches:
    """Keeps the store busy (the backtest, and the bench's direct run). Batch
    k+1 is prepared (decoded, planned, encoded) while the store applies
    batch k; it goes to the store as soon as k's reply is in, and k is
    judged, settled and handed on while the store applies k+1. Store calls
    keep input order: the aggregates of k+1 are sent only after those of k
    came back, and k+1 claims incidents only after k did (the two scripts
    touch disjoint keys, so k's claims queued behind k+1's aggregates change
    nothing). Results are handed on in batch order."""

    def __init__(self, pipeline: Pipeline, on_result: OnResult) -> None:
        self._pipeline = pipeline
        self._on_result = on_result
        self._applying: tuple[Prepared, int, int, asyncio.Task[list[EventObservations]]] | None = (
            None
        )
        self._concluding: asyncio.Task[None] | None = None

    async def submit(self, batch: Sequence[tuple[Topic, SourceRecord]]) -> None:
        now_ms = int(time.time() * 1000)
        prepared = self._pipeline.prepare(batch, now_ms)
        applied = await self._applied()
        task = asyncio.create_task(self._pipeline.observe(prepared))
        self._applying = (prepared, now_ms, len(batch), task)
        if applied is not None:
            # Created after the store call, so it runs (judging) after the send.
            previous = self._concluding
            self._concluding = asyncio.create_task(self._conclude(previous, *applied))
        await asyncio.sleep(0)  # let both start before the caller prepares the next batch

    async def _applied(self) -> tuple[Prepared, int, int, list[EventObservations]] | None:
        if self._applying is None:
            return None
        prepared, now_ms, records, task = self._applying
        self._applying = None
        return prepared, now_ms, records, await task

    async def _conclude(
        self,
        previous: asyncio.Task[None] | None,
        prepared: Prepared,
        now_ms: int,
        records: int,
        observations: list[EventObservations],
    ) -> None:
        if previous is not None:
            await previous
        result = await self._pipeline.conclude(prepared, observations, now_ms)
        await self._on_result(result, records)

    async def drain(self) -> None:
        """Wait until every submitted batch is concluded and handed on."""
        applied = await self._applied()
        if applied is not None:
            self._concluding = asyncio.create_task(self._conclude(self._concluding, *applied))
        if self._concluding is not None:
            task, self._concluding = self._concluding, None
            await task

    def cancel(self) -> None:
        """After a failure: stop whatever is still in flight."""
        for task in (self._applying[3] if self._applying else None, self._concluding):
            if task is not None:
                task.cancel()


def _late_updates(
    requests: Sequence[engine.GroupRequest], observed: dict[str, engine.Observation]
) -> int:
    """Updates refused as too late. Only what the event adds counts: a group
    also reads aggregates no rule of this event needs, and a late read of
    one of those is no lost update."""
    if all(o.value is not None for o in observed.values()):
        return 0
    return sum(
        1
        for req in requests
        for spec, c in zip(req.group.specs, req.contributions, strict=True)
        if c is not None and observed[spec.agg_id].value is None
    )


def _merchant(event: Event) -> str | None:
    return getattr(event, "merchant_id", None)


def _payout(event: Event) -> tuple[str, int, str] | None:
    if isinstance(event, Payout):
        return (event.payout_id, event.amount_minor, event.currency)
    return None
