"""State store: the Protocol the pipeline talks to; Redis and in-memory backends behind it."""

from stream.store.base import (
    EventObservations,
    EventRequests,
    EventStatus,
    EventStore,
    IncidentClaim,
    IncidentOutcome,
    IncidentStatus,
)

__all__ = [
    "EventObservations",
    "EventRequests",
    "EventStatus",
    "EventStore",
    "IncidentClaim",
    "IncidentOutcome",
    "IncidentStatus",
]
