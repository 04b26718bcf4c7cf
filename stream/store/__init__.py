"""State store: the Protocol the pipeline talks to, and the Redis backend behind it."""

from stream.store.base import (
    AppendStatus,
    EventStore,
    IncidentClaim,
    IncidentOutcome,
    IncidentStatus,
    LogAppend,
    LogObservation,
)

__all__ = [
    "AppendStatus",
    "EventStore",
    "IncidentClaim",
    "IncidentOutcome",
    "IncidentStatus",
    "LogAppend",
    "LogObservation",
]
