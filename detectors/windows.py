"""Event-time window arithmetic.

A sliding window of length L is the half-open interval [s, s + L) of event
times. "Some window holds at least N events" is the order-independent
question a velocity rule asks: whichever order events arrive in, the same
windows exist, so the same incidents are found (a live stream and a replay of
it agree).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowCount:
    """The busiest window of length `length_ms` that contains a given event."""

    count: int
    start_ms: int  # event time of the earliest event in the window (its left edge)
    length_ms: int

    @property
    def end_ms(self) -> int:
        """Exclusive right edge."""
        return self.start_ms + self.length_ms


def busiest_window_containing(times: Sequence[int], t: int, length_ms: int) -> WindowCount:
    """Count of the busiest window [s, s + length_ms) with s <= t < s + length_ms.

    `times` must be sorted ascending and include `t` itself. Only left edges
    at event times need checking: sliding a window's left edge forward to the
    next event never lowers its count. Ties resolve to the earliest window so
    the result (and ids derived from it) is deterministic.
    """
    if length_ms <= 0:
        raise ValueError("window length must be positive")
    lo = bisect_right(times, t - length_ms)  # first candidate edge > t - L
    hi = bisect_right(times, t)  # candidate edges <= t
    best = WindowCount(count=0, start_ms=t, length_ms=length_ms)
    for i in range(lo, hi):
        s = times[i]
        if i > lo and s == times[i - 1]:
            continue
        count = bisect_left(times, s + length_ms, lo=i) - bisect_left(times, s, hi=i + 1)
        if count > best.count:
            best = WindowCount(count=count, start_ms=s, length_ms=length_ms)
    return best


def retention_ms(window_ms: int, allowed_lateness_ms: int, dedup_horizon_ms: int) -> int:
    """How far behind the newest event time a per-entity log must keep entries.

    The log doubles as the duplicate guard, so it keeps whichever is longer:
    what a window plus allowed lateness needs, or the dedup horizon. Windows
    look both ways from a late event, hence twice the window.
    """
    return max(2 * window_ms + allowed_lateness_ms, dedup_horizon_ms)


def oldest_usable_ms(newest_ms: int, retention: int, window_ms: int) -> int:
    """Earliest event time that can still be evaluated exactly.

    An event at t is judged on log entries in (t - window, t + window); the log
    holds entries back to `newest_ms - retention`, so t must be at least one
    window inside that horizon. Older events are "too late": not counted,
    reported in a metric.
    """
    return newest_ms - retention + window_ms
