"""Per-entity state of the in-memory store, one class per piece of state
aggregates.lua keeps in Redis, with the same rules step for step.

The values these return are the script's: a bucketed window's running total
and end bucket (-1: too late for the retained buckets), a distinct count and
the newest time it was judged at, a first sighting (-1: none). Only Redis'
TTLs have no counterpart: they reclaim keys after wall-clock idleness, and
this store has no wall clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from stream.store.base import EventStatus

__all__ = [
    "BucketedWindow",
    "Bucketing",
    "DistinctWindow",
    "Guard",
    "bucketed_op",
    "first_seen_op",
]

# How often (in fractions of the duplicate horizon) the guard is trimmed.
GUARD_SLICES = 64


@dataclass(slots=True)
class Guard:
    """The duplicate guard: event id → event ms. One for the whole store, as
    aggregates.lua keeps one per slot (one on a standalone Redis)."""

    seen: dict[str, int] = field(default_factory=dict)
    newest: int | None = None

    def admit(self, event_id: str, t: int, horizon_ms: int) -> EventStatus:
        """Record the event unless it is a duplicate or older than the horizon
        behind the newest event. Trimming forgets only events that would now
        be too old anyway, so it is done, as the script does, once per 1/64
        of the horizon that event time enters."""
        newest = self.newest
        if newest is not None and t < newest - horizon_ms:
            return EventStatus.TOO_OLD
        if event_id in self.seen:
            return EventStatus.DUPLICATE
        self.seen[event_id] = t
        slice_ms = horizon_ms / GUARD_SLICES  # a float, as Lua divides
        if newest is None or math.floor(t / slice_ms) > math.floor(newest / slice_ms):
            floor = t - horizon_ms
            self.seen = {e: ms for e, ms in self.seen.items() if ms >= floor}
        self.newest = t if newest is None else max(newest, t)
        return EventStatus.NEW


@dataclass(frozen=True, slots=True)
class Bucketing:
    """A count's or sum's bucket size, window (in buckets) and lateness (in buckets)."""

    bucket_ms: int
    buckets: int
    late_buckets: int


@dataclass(slots=True)
class BucketedWindow:
    """A count or sum: `newest` bucket, `total` of the window ending there,
    and the retained buckets (the window plus the lateness behind it)."""

    newest: int
    total: int
    buckets: dict[int, int] = field(default_factory=dict)
    # The newest counted events, oldest first, and how many were ever
    # counted since the window last started afresh (aggregates.lua's ring).
    ring: list[tuple[int, str]] = field(default_factory=list)
    seq: int = 0

    def count_event(self, entry: tuple[int, str] | None, size: int) -> None:
        if entry is not None and size:
            self.seq += 1
            self.ring.append(entry)
            del self.ring[:-size]

    def window(self, b: int, n: int) -> tuple[int, int]:
        """Exact value of the window ending at bucket b (a reader's view)."""
        if b - n + 1 > self.newest:
            return 0, b
        return sum(self._values(b - n + 1, min(b, self.newest))), b

    def busiest(self, b: int, n: int) -> tuple[int, int]:
        """The busiest window containing bucket b and ending by the newest
        bucket; ties go to the earliest."""
        lo = b - n + 1
        vals = self._values(lo, min(b + n - 1, self.newest))
        best, best_end, s = -1, b, 0
        for idx, v in enumerate(vals):
            s += v
            if idx >= n:
                s -= vals[idx - n]
            bucket = lo + idx
            if bucket >= b and s > best:
                best, best_end = s, bucket
        return best, best_end

    def add(self, b: int, d: int, n: int) -> None:
        """Count d in bucket b (not after the newest)."""
        self.buckets[b] = self.buckets.get(b, 0) + d
        if b > self.newest - n:
            self.total += d

    def advance(self, b: int, shape: Bucketing) -> None:
        """Move the newest bucket forward to b: buckets leaving the window
        leave the total, buckets beyond the lateness are dropped."""
        n, nb = shape.buckets, self.newest
        if b - nb >= n:
            self.total = 0
        else:
            self.total -= sum(self._values(nb - n + 1, b - n))
        self._drop(nb - n + 1 - shape.late_buckets, min(b - n - shape.late_buckets, nb))
        self.newest = b

    def _values(self, lo: int, hi: int) -> list[int]:
        get = self.buckets.get
        return [get(i, 0) for i in range(lo, hi + 1)]

    def _drop(self, lo: int, hi: int) -> None:
        if hi < lo:
            return
        if hi - lo < len(self.buckets):
            for i in range(lo, hi + 1):
                self.buckets.pop(i, None)
        else:
            for i in [i for i in self.buckets if lo <= i <= hi]:
                del self.buckets[i]


def bucketed_op(
    state: BucketedWindow | None,
    apply: bool,
    reader: bool,
    t: int,
    d: int,
    shape: Bucketing,
    ring: tuple[tuple[int, str] | None, int] = (None, 0),
) -> tuple[BucketedWindow | None, int, int]:
    """(the new state, value, end bucket) of one count/sum op, as sum_op in
    aggregates.lua: `apply` adds d (False for a duplicate, judged on the
    same window without adding); `reader` only reads the window ending at
    the event's own bucket (e.g. a ratio's denominator). `ring`: the
    event's entry (None: not recorded) and the ring's size."""
    b = t // shape.bucket_ms
    n = shape.buckets
    entry, size = ring if apply and d != 0 else (None, 0)
    if state is None:
        if not apply or d == 0:
            return None, 0, b
        fresh = BucketedWindow(b, d, {b: d})
        fresh.count_event(entry, size)
        return fresh, d, b
    if b < state.newest - n + 1 - shape.late_buckets:
        return state, -1, b
    if reader:
        return (state, state.total, b) if b == state.newest else (state, *state.window(b, n))
    if b > state.newest:
        if b - n - shape.late_buckets >= state.newest:
            # Every retained bucket (and the ring) leaves the window and the lateness.
            total = d if apply else 0
            fresh = BucketedWindow(b, total, {b: total} if total else {})
            fresh.count_event(entry, size)
            return fresh, total, b
        state.advance(b, shape)
        if apply and d != 0:
            state.total += d
            state.buckets[b] = d
            state.count_event(entry, size)
        return state, state.total, b
    if apply and d != 0:
        state.add(b, d, n)
        state.count_event(entry, size)
    if b == state.newest:
        return state, state.total, b
    return (state, *state.busiest(b, n))


@dataclass(slots=True)
class DistinctWindow:
    """Distinct values: value → the newest event ms it was seen at."""

    last_seen: dict[str, int] = field(default_factory=dict)

    def op(
        self, apply: bool, member: str, t: int, window_ms: int, lateness_ms: int
    ) -> tuple[int, int]:
        """(distinct values in the window ending at the newest time, that
        time), as dst_op in aggregates.lua."""
        seen = self.last_seen
        if apply and seen.get(member, t - 1) < t:
            seen[member] = t
        if not seen:
            return 0, t
        newest = max(max(seen.values()), t)
        if apply:
            floor = newest - window_ms - lateness_ms
            self.last_seen = seen = {m: ms for m, ms in seen.items() if ms >= floor}
        start = newest - window_ms
        return sum(1 for ms in seen.values() if start < ms <= newest), newest


def first_seen_op(current: int | None, apply: bool, t: int, backdate_ms: int) -> int | None:
    """The first sighting after this event, as first_op in aggregates.lua: an
    event may move it back by at most `backdate_ms`."""
    if apply and (current is None or current - backdate_ms <= t < current):
        return t
    return current
