"""Counter readings of the in-memory store (stream.store.counters says what
a reading is)."""

from __future__ import annotations

from collections.abc import Mapping

from detectors.aggregates import AggregateKind, AggregateSpec
from stream.store.counters import CounterQuery, CounterReading, Entity
from stream.store.memory_state import BucketedWindow, DistinctWindow

__all__ = ["MemoryCounters"]


class MemoryCounters:
    """Readings of the in-memory store's state (stream.store.memory_store),
    by the same rules as the Redis reader."""

    def __init__(
        self,
        windows: Mapping[tuple[Entity, str, str | None], BucketedWindow],
        distinct: Mapping[tuple[Entity, str], DistinctWindow],
        first: Mapping[tuple[Entity, str], int],
    ) -> None:
        self._windows, self._distinct, self._first = windows, distinct, first

    async def read(self, query: CounterQuery) -> list[CounterReading]:
        at: Entity = (query.entity, query.entity_ids)
        return [self._one(at, spec, c) for spec, c in query.wanted()]

    def _one(self, at: Entity, spec: AggregateSpec, currency: str | None) -> CounterReading:
        if spec.kind is AggregateKind.FIRST_SEEN:
            return CounterReading(spec, None, self._first.get((at, spec.agg_id)), None)
        if spec.kind is AggregateKind.DISTINCT:
            state = self._distinct.get((at, spec.agg_id))
            if state is None or not state.last_seen:
                return CounterReading(spec, None, None, None)
            assert spec.window_ms is not None
            newest = max(state.last_seen.values())
            start = newest - spec.window_ms
            n = sum(1 for ms in state.last_seen.values() if start < ms <= newest)
            return CounterReading(spec, None, n, newest + 1)
        window = self._windows.get((at, spec.agg_id, currency))
        if window is None:
            return CounterReading(spec, currency, None, None)
        assert spec.bucket_ms is not None
        return CounterReading(spec, currency, window.total, (window.newest + 1) * spec.bucket_ms)
