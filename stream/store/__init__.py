"""State store: the Protocol the pipeline talks to, and the Redis backend behind it."""

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
