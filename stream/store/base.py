"""The storage Protocol. Backends (Redis standalone or Cluster, and the
in-memory store) sit behind it; the pipeline only sees batches in and
observations out.

Both operations are idempotent by construction, so a batch can always be
retried whole after a crash or a transient error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from detectors.counted import Counted
from detectors.engine import GroupRequest, Observation
from detectors.rules_entities import EntityType
from stream.store.counters import CounterReader
from stream.store.guard_counters import GuardCounters
from stream.store.health_ledger import HealthLedger
from stream.store.payouts import PayoutBook

__all__ = [
    "EventObservations",
    "EventRequests",
    "EventStatus",
    "EventStore",
    "IncidentClaim",
    "IncidentOutcome",
    "IncidentStatus",
    "StoreConfig",
]


class EventStatus(StrEnum):
    NEW = "new"  # applied
    DUPLICATE = "dup"  # already applied (redelivery or upstream duplicate): read only
    TOO_OLD = "late"  # older than the duplicate horizon of some entity: not applied there


class IncidentStatus(StrEnum):
    NEW = "new"  # opened an incident: publish the alert
    OPEN = "open"  # belongs to an incident already alerted: publish nothing
    REEMIT = "reemit"  # same trigger at the same position seen again: republish the stored alert


@dataclass(frozen=True, slots=True)
class EventRequests:
    event_id: str
    event_ms: int
    requests: Sequence[GroupRequest]  # one per entity the event touches
    # The event's currency: it selects the money aggregates (sums) the event
    # feeds and reads, which are kept per currency. None: no sums asked for.
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class EventObservations:
    status: EventStatus  # the least favourable across the event's entities
    values: dict[str, Observation]  # by agg_id
    # By agg_id, for the aggregates whose value reached their report floor:
    # the events the ring holds, oldest first (detectors.counted).
    counted: dict[str, Counted] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentClaim:
    entity_type: tuple[EntityType, ...]
    entity_ids: tuple[str, ...]
    rule_id: str
    base: str  # incident_base(rule, version, entity): the store numbers incidents under it
    start_ms: int
    end_ms: int
    cooldown_ms: int
    trigger_event_id: str
    trigger_position: str
    payload: bytes  # the alert with ALERT_ID_PLACEHOLDER; kept to republish byte for byte
    ttl_ms: int
    retention_ms: int
    epoch: int


@dataclass(frozen=True, slots=True)
class IncidentOutcome:
    status: IncidentStatus
    alert_id: str
    payload: bytes | None  # the published alert (NEW and REEMIT)


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """How far back a backend keeps state, in event time. The TTLs
    (`first_seen_ttl_ms`, `ttl_slack_ms`) only reclaim idle Redis keys; the
    in-memory store has no clock to expire by."""

    dedup_horizon_ms: int = 86_400_000
    lateness_ms: int = 3_600_000
    first_seen_ttl_ms: int = 400 * 86_400_000
    ttl_slack_ms: int = 3_600_000
    # How far an event may move a first sighting back (None: the lateness).
    # Replays of history after a state loss lift the limit.
    first_seen_backdate_ms: int | None = None
    # Event ids kept with each count and sum an alert can list (a ring of
    # the newest), handed back near a rule's crossing (detectors.counted);
    # 0: none kept.
    counted_events: int = 20

    @property
    def backdate_ms(self) -> int:
        return (
            self.lateness_ms if self.first_seen_backdate_ms is None else self.first_seen_backdate_ms
        )


class EventStore(Protocol):
    async def start(self) -> None:
        """Get ready to serve (Redis: connect, load the scripts, adopt the
        epoch); raises StoreUnavailable."""

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def apply(
        self, events: Sequence[EventRequests], after: asyncio.Event | None = None
    ) -> list[EventObservations]:
        """Applied in order, atomically per entity; results align with `events`.
        Calls that overlap are applied one after the other in the order they
        were made, and a backend builds its call (CPU only) before its first
        await: a caller may start the next batch's `apply` while this one is
        in flight, and that batch's call is built meanwhile. With `after`, the
        call, once built, waits for that event before it takes its turn: a
        caller that may have to redo the batch before this one (the live
        worker, stream.pipelined) applies batches strictly one after the
        other without losing the overlap of building them."""

    async def claim_incidents(self, claims: Sequence[IncidentClaim]) -> list[IncidentOutcome]:
        """Applied in order, atomically per entity; results align with `claims`."""

    def guard_counters(self) -> GuardCounters:
        """The guardrails' counts, shared by every worker of the store."""
        ...

    def payout_book(self) -> PayoutBook:
        """The merchants' order and payout times (detectors.paid_out); one
        per store, so its calls keep their order."""
        ...

    async def advance_delivered(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """Raise the delivered watermarks of `group`'s input partitions
        ((topic, partition) → offset) to at least the given offsets; a
        watermark never goes down, so a late or zombie writer cannot undo
        what another wrote. Raises StoreUnavailable."""

    async def delivered(
        self, group: str, parts: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        """The delivered watermarks of `parts`; a partition without one is absent."""

    def health_ledger(self) -> HealthLedger:
        """The merchant-health ledger (stream.store.health_ledger), shared by
        every worker of the store."""
        ...

    def counters(self) -> CounterReader:
        """A read-only view of entities' counters, for people (the console,
        `fraudstream counters`): reading changes nothing."""
        ...
