"""Aggregates: what is counted, per which entity, over which window, and
what the store answers when asked for one (an Observation).

An AggregateSpec is pure data. Several rules naming the same aggregate share
one piece of state (its `agg_id` is a digest of what defines it). The store
keeps it; this module only says which events contribute what.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from detectors.events import Event, Topic
from detectors.rules_conditions import Condition
from detectors.rules_entities import EntityType, entity_value

__all__ = ["AggregateKind", "AggregateSpec", "Observation"]


class AggregateKind(StrEnum):
    COUNT = "count"  # events in the window
    SUM = "sum"  # sum of a money field, in minor units, per currency
    DISTINCT = "distinct"  # distinct values of a field in the window (exact)
    FIRST_SEEN = "first_seen"  # event time the entity was first seen; rules read its age


@dataclass(frozen=True, slots=True)
class AggregateSpec:
    kind: AggregateKind
    topics: frozenset[Topic]
    entity: tuple[EntityType, ...]
    field: str | None = None
    # The window; for FIRST_SEEN how long a sighting is kept (None: the store's default).
    window_ms: int | None = None
    bucket_ms: int | None = None
    where: tuple[Condition, ...] = ()
    # Stable short id of the definition (used in Redis keys); computed once,
    # because it is needed for every event.
    agg_id: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        digest = hashlib.blake2b(self.signature().encode(), digest_size=6).hexdigest()
        object.__setattr__(self, "agg_id", digest)

    def signature(self) -> str:
        parts = [
            self.kind.value,
            ",".join(sorted(t.value for t in self.topics)),
            "+".join(e.value for e in self.entity),
            self.field or "",
            str(self.window_ms or ""),
            str(self.bucket_ms or ""),
            ";".join(c.signature() for c in self.where),
        ]
        return "|".join(parts)

    @property
    def per_currency(self) -> bool:
        """Sums are money: kept apart per currency (the event's currency is
        part of the state it feeds and reads), never added across currencies."""
        return self.kind is AggregateKind.SUM

    def entity_ids(self, event: Event) -> tuple[str, ...] | None:
        ids = []
        for entity in self.entity:
            value = entity_value(event, entity)
            if value is None:
                return None
            ids.append(value)
        return tuple(ids)

    def contribution(self, topic: Topic, event: Event) -> int | str | None:
        """What `event` adds, or None when it does not contribute."""
        if topic not in self.topics or not all(c.matches(event) for c in self.where):
            return None
        if self.kind is AggregateKind.COUNT or self.kind is AggregateKind.FIRST_SEEN:
            return 1
        value: Any = getattr(event, self.field or "", None)
        if value is None:
            return None
        if self.kind is AggregateKind.SUM:
            return int(value)
        return str(value)


class Observation(NamedTuple):
    """The store's answer for one aggregate of one entity. `value` None means
    the event was too late for the retained state (not counted, not judged).
    A NamedTuple, not a frozen dataclass: a dozen are built per event, and a
    tuple is the cheapest to build."""

    value: int | None
    window_end_ms: int  # exclusive end of the window the value covers (first_seen: unused)
