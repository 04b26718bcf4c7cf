"""The in-memory backend of the EventStore Protocol.

A real store, not a mock: a duplicate guard, event-time windows
(bucketed counts and sums, one per currency; exact distinct counts; first
sightings) and incident claims with the semantics of the Redis scripts
(aggregates.lua, claim_incidents.lua), so the values it returns are the
values Redis returns for the same requests in the same order. That makes it
the pipeline's store for tests without services, and an executable spec of
the scripts (a differential test runs both on the simulator's traffic).

Time is the events' own: nothing here reads a clock, and nothing expires
(Redis' TTLs only reclaim keys idle for longer than their windows). Ids and
distinct values are kept as they are: the keyed hashes Redis stores exist to
keep raw identifiers out of a shared server, and equal values hash equally.
One difference is left on purpose: when a crossing overlaps several open
incidents of one rule and entity, this store settles it on the oldest one,
while Redis takes whichever its hash lists first.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.counted import Counted, ReportFloor
from detectors.decisions import ALERT_ID_PLACEHOLDER
from detectors.engine import GroupRequest, Observation
from detectors.rules_entities import EntityType
from stream.store.base import (
    EventObservations,
    EventRequests,
    EventStatus,
    IncidentClaim,
    IncidentOutcome,
    IncidentStatus,
    StoreConfig,
)
from stream.store.counters import CounterReader
from stream.store.guard_counters import GuardCounters, MemoryGuardCounters
from stream.store.health_ledger import HealthLedger, MemoryHealthLedger
from stream.store.memory_counters import MemoryCounters
from stream.store.memory_state import (
    BucketedWindow,
    Bucketing,
    DistinctWindow,
    Guard,
    bucketed_op,
    first_seen_op,
)
from stream.store.payouts import MemoryPayoutBook, PayoutBook

__all__ = ["MemoryStore"]

# Which entity a piece of state belongs to: its types and ids.
Entity = tuple[tuple[EntityType, ...], tuple[str, ...]]
# Only counts and sums add up on a redelivery; distinct values and first
# sightings are idempotent by themselves and need no guard.
_GUARDED = frozenset({AggregateKind.COUNT, AggregateKind.SUM})
_RANK = {EventStatus.NEW: 2, EventStatus.DUPLICATE: 1, EventStatus.TOO_OLD: 0}
_PLACEHOLDER = ALERT_ID_PLACEHOLDER.encode()


@dataclass(frozen=True, slots=True)
class _Ring:
    """What a count or sum op needs for the ring: the event's entry (None:
    its unit adds to no count or sum, or the aggregate keeps no ring), the
    op's report floor, and where a ring read back goes."""

    entry: tuple[int, str] | None
    floor: ReportFloor | None
    counted: dict[str, Counted]


@dataclass(slots=True)
class _Incident:
    from_ms: int
    until_ms: int  # the crossing's end plus the cooldown
    trigger: tuple[str, str]  # the event that opened it, and its source position
    payload: bytes  # the published alert

    def overlaps(self, start_ms: int, reach_ms: int) -> bool:
        """Whether a crossing from `start_ms`, reaching (with its cooldown) to
        `reach_ms`, meets this incident's span."""
        return start_ms <= self.until_ms and reach_ms >= self.from_ms


@dataclass(slots=True)
class _Incidents:
    """One rule's recent incidents on one entity, oldest first."""

    by_alert: dict[str, _Incident] = field(default_factory=dict)
    seq: dict[int, int] = field(default_factory=dict)  # per incident epoch: incidents opened


class MemoryStore:
    def __init__(self, config: StoreConfig | None = None) -> None:
        self._config = config or StoreConfig()
        self._guard = Guard()  # one, as the script's on a standalone Redis
        self._windows: dict[tuple[Entity, str, str | None], BucketedWindow] = {}
        self._distinct: dict[tuple[Entity, str], DistinctWindow] = {}
        self._first: dict[tuple[Entity, str], int] = {}
        self._incidents: dict[tuple[Entity, str], _Incidents] = {}
        self._shapes: dict[str, Bucketing] = {}
        self._guard_counters = MemoryGuardCounters()
        self._payout_book = MemoryPayoutBook()
        self._delivered: dict[tuple[str, str, int], int] = {}  # (group, topic, partition)
        self._health: MemoryHealthLedger | None = None

    async def start(self) -> None:
        """Nothing to connect to."""

    async def close(self) -> None:
        """Nothing to release: the state lives as long as the object."""

    async def ping(self) -> bool:
        return True

    async def apply(
        self, events: Sequence[EventRequests], after: asyncio.Event | None = None
    ) -> list[EventObservations]:
        if after is not None:
            await after.wait()
        return [self._apply_event(ev) for ev in events]

    async def claim_incidents(self, claims: Sequence[IncidentClaim]) -> list[IncidentOutcome]:
        return [self._claim(c) for c in claims]

    def _apply_event(self, ev: EventRequests) -> EventObservations:
        """Per entity: admit the event through the guard (once, at its first
        entity that needs it), then every op; the event's status is the
        least favourable across its entities."""
        status = EventStatus.NEW
        verdict: EventStatus | None = None
        values: dict[str, Observation] = {}
        counted: dict[str, Counted] = {}
        for req in ev.requests:
            unit = EventStatus.NEW
            guarded = _guarded(req)
            if guarded:
                if verdict is None:
                    verdict = self._guard.admit(
                        ev.event_id, ev.event_ms, self._config.dedup_horizon_ms
                    )
                unit = verdict
            if _RANK[unit] < _RANK[status]:
                status = unit
            entity = (req.group.entity, req.entity_ids)
            entry = (ev.event_ms, ev.event_id) if guarded else None
            for i, (spec, c) in enumerate(zip(req.group.specs, req.contributions, strict=True)):
                new = unit is EventStatus.NEW
                if spec.kind in _GUARDED:
                    kept = entry if req.group.keeps_ring(i) else None
                    ring = _Ring(kept, req.group.floor(i), counted)
                    values[spec.agg_id] = self._bucketed(entity, spec, c, new, ev, ring)
                else:
                    values[spec.agg_id] = self._op(entity, spec, c, new, ev)
        return EventObservations(status, values, counted)

    def _op(
        self,
        entity: Entity,
        spec: AggregateSpec,
        contribution: int | str | None,
        new: bool,
        ev: EventRequests,
    ) -> Observation:
        apply = new and contribution is not None
        if spec.kind is AggregateKind.FIRST_SEEN:
            return self._first_seen(entity, spec, apply, ev.event_ms)
        return self._distinct_op(entity, spec, contribution, apply, ev.event_ms)

    def _first_seen(self, entity: Entity, spec: AggregateSpec, apply: bool, t: int) -> Observation:
        key = (entity, spec.agg_id)
        first = first_seen_op(self._first.get(key), apply, t, self._config.backdate_ms)
        if first is None:
            return Observation(-1, 0)
        self._first[key] = first
        return Observation(first, 0)

    def _distinct_op(
        self,
        entity: Entity,
        spec: AggregateSpec,
        contribution: int | str | None,
        apply: bool,
        t: int,
    ) -> Observation:
        assert spec.window_ms is not None
        key = (entity, spec.agg_id)
        state = self._distinct.get(key)
        if state is None:
            state = DistinctWindow()
            if apply:
                self._distinct[key] = state
        member = str(contribution) if apply else ""
        value, newest = state.op(apply, member, t, spec.window_ms, self._config.lateness_ms)
        return Observation(value, newest + 1)

    def _bucketed(
        self,
        entity: Entity,
        spec: AggregateSpec,
        contribution: int | str | None,
        new: bool,
        ev: EventRequests,
        ring: _Ring,
    ) -> Observation:
        """A count or sum; its ring read back (into `ring.counted`) when the
        value reaches the floor, as aggregates.lua does."""
        apply = new and contribution is not None
        currency = None
        if spec.per_currency:
            if ev.currency is None:
                raise ValueError("sums are kept per currency: the event's currency is required")
            currency = ev.currency
        key = (entity, spec.agg_id, currency)
        shape = self._shape(spec)
        reader = contribution is None
        delta = 0 if contribution is None else int(contribution)
        size = self._config.counted_events
        state, value, end = bucketed_op(
            self._windows.get(key), apply, reader, ev.event_ms, delta, shape, (ring.entry, size)
        )
        if state is not None:
            self._windows[key] = state
            report_at = ring.floor.at(currency) if ring.floor is not None else 0
            if size and report_at and value >= report_at and state.seq:
                ring.counted[spec.agg_id] = tuple(state.ring)
        if value < 0:
            return Observation(None, 0)
        return Observation(value, (end + 1) * shape.bucket_ms)

    def _shape(self, spec: AggregateSpec) -> Bucketing:
        shape = self._shapes.get(spec.agg_id)
        if shape is None:
            assert spec.bucket_ms is not None and spec.window_ms is not None
            late = -(-self._config.lateness_ms // spec.bucket_ms)
            shape = Bucketing(spec.bucket_ms, spec.window_ms // spec.bucket_ms, late)
            self._shapes[spec.agg_id] = shape
        return shape

    def _claim(self, c: IncidentClaim) -> IncidentOutcome:
        """As claim_incidents.lua: a crossing [start, end) belongs to an
        incident whose span, widened by the cooldown, it overlaps; the same
        trigger at the same position is a redelivery; otherwise a new
        incident gets the next number of its epoch."""
        book = self._incidents.setdefault(((c.entity_type, c.entity_ids), c.rule_id), _Incidents())
        reach = c.end_ms + c.cooldown_ms
        listed = list(book.by_alert.items())
        newest_until = max([reach, *(inc.until_ms for _, inc in listed)])
        found = next((aid for aid, inc in listed if inc.overlaps(c.start_ms, reach)), None)
        if found is None:
            outcome = self._open(book, c)
        elif book.by_alert[found].trigger == (c.trigger_event_id, c.trigger_position):
            outcome = IncidentOutcome(IncidentStatus.REEMIT, found, book.by_alert[found].payload)
        else:
            inc = book.by_alert[found]
            inc.from_ms = min(inc.from_ms, c.start_ms)
            inc.until_ms = max(inc.until_ms, reach)
            newest_until = max(newest_until, inc.until_ms)
            outcome = IncidentOutcome(IncidentStatus.OPEN, found, None)
        for aid, inc in listed:
            if inc.until_ms < newest_until - c.retention_ms:
                del book.by_alert[aid]
        return outcome

    def _open(self, book: _Incidents, c: IncidentClaim) -> IncidentOutcome:
        seq = book.seq[c.epoch] = book.seq.get(c.epoch, 0) + 1
        aid = _alert_id(c.base, c.epoch, seq)
        payload = c.payload.replace(_PLACEHOLDER, aid.encode(), 1)
        trigger = (c.trigger_event_id, c.trigger_position)
        book.by_alert[aid] = _Incident(c.start_ms, c.end_ms + c.cooldown_ms, trigger, payload)
        return IncidentOutcome(IncidentStatus.NEW, aid, payload)

    def guard_counters(self) -> GuardCounters:
        """The guardrails' counts, living as long as the store."""
        return self._guard_counters

    def payout_book(self) -> PayoutBook:
        return self._payout_book

    async def advance_delivered(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """A monotonic max per partition, as ZADD GT in Redis."""
        for (topic, partition), offset in offsets.items():
            key = (group, topic, partition)
            self._delivered[key] = max(self._delivered.get(key, offset), offset)

    async def delivered(
        self, group: str, parts: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        found = ((part, self._delivered.get((group, *part))) for part in parts)
        return {part: offset for part, offset in found if offset is not None}

    def health_ledger(self) -> HealthLedger:
        """The merchant-health ledger, living as long as the store."""
        if self._health is None:
            self._health = MemoryHealthLedger()
        return self._health

    def counters(self) -> CounterReader:
        return MemoryCounters(self._windows, self._distinct, self._first)


def _guarded(req: GroupRequest) -> bool:
    """Whether a unit adds to a count or sum, and so goes through the guard;
    one that only reads, or feeds idempotent aggregates, is always new."""
    return any(
        c is not None and spec.kind in _GUARDED
        for spec, c in zip(req.group.specs, req.contributions, strict=True)
    )


def _alert_id(base: str, epoch: int, seq: int) -> str:
    """The seq-th incident (from 1) of a (rule, entity) pair in an incident
    epoch: the digest claim_incidents.lua computes."""
    return "al_" + hashlib.sha1(f"{base}:{epoch}:{seq}".encode()).hexdigest()[:32]
