"""The storage Protocol. Backends (Redis standalone, Redis Cluster) sit behind it;
the pipeline only sees batches in and observations out.

Both operations are idempotent by construction, so a batch can always be
retried whole after a crash or a transient error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from detectors.rules import EntityType


class AppendStatus(StrEnum):
    NEW = "new"  # first time this event id was seen for the entity
    DUPLICATE = "dup"  # event id already in the log (redelivery or upstream duplicate)
    TOO_LATE = "late"  # older than the log's horizon: not counted


class IncidentStatus(StrEnum):
    NEW = "new"  # opened an incident: publish the alert
    OPEN = "open"  # belongs to an incident already alerted: publish nothing
    REEMIT = "reemit"  # same trigger at the same position seen again: republish the stored alert


@dataclass(frozen=True, slots=True)
class LogAppend:
    """Add `event_id` at `event_ms` to an entity's event log and read the log
    around it: (event_ms - span_ms, event_ms + span_ms)."""

    entity_type: EntityType
    entity_id: str
    log_name: str
    event_id: str
    event_ms: int
    span_ms: int
    retention_ms: int


@dataclass(frozen=True, slots=True)
class LogObservation:
    status: AppendStatus
    entries: list[tuple[str, int]]  # (event_id, event_ms), ascending by time
    truncated: bool  # more entries in range than the read cap


@dataclass(frozen=True, slots=True)
class IncidentClaim:
    entity_type: EntityType
    entity_id: str
    rule_id: str
    alert_id: str
    start_ms: int
    end_ms: int
    cooldown_ms: int
    trigger_event_id: str
    trigger_position: str
    payload: bytes  # the published alert, kept so a redelivery republishes it byte for byte
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class IncidentOutcome:
    status: IncidentStatus
    alert_id: str
    payload: bytes | None  # set for REEMIT


class EventStore(Protocol):
    async def start(self) -> None:
        """Connect and load scripts; raises StoreUnavailable."""

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def append_and_read(self, appends: Sequence[LogAppend]) -> list[LogObservation]:
        """Applied in order, atomically per entity; results align with `appends`."""

    async def claim_incidents(self, claims: Sequence[IncidentClaim]) -> list[IncidentOutcome]:
        """Applied in order, atomically per entity; results align with `claims`."""
