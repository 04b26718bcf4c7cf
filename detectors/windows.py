"""Event-time window arithmetic for bucketed sliding windows.

A window of length W is kept as N equal buckets of b = W / N milliseconds of
*event time* (b is picked from a ladder of round sizes so N >= 20; a rule may
set it). Bucket i holds the events with event time in [i*b, (i+1)*b). The
window "ending at bucket e" is buckets e-N+1 .. e: exactly W long, aligned to
b. Counting in buckets (instead of keeping every event) is what keeps state
per key independent of traffic: at most N + lateness/b small counters.

Evaluation semantics (documented for rule authors and checked by property
tests against a brute-force recomputation):
- an event in the entity's newest bucket (the usual, in-order case) is judged
  on the window ending at that bucket, maintained as a running total (O(1));
- a late event (older bucket, within the allowed lateness) is counted in its
  own bucket and judged on the busiest window that contains it, so a late
  event that completes a burst in hindsight is still caught;
- an event older than the retained buckets is "too late": not counted,
  reported in a metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "Bucketing",
    "busiest_window_containing",
    "default_bucket_ms",
    "retention_ms",
    "window_sum",
]

BUCKET_LADDER_MS = (
    1_000,
    5_000,
    10_000,
    15_000,
    30_000,
    60_000,
    120_000,
    300_000,
    600_000,
    900_000,
    1_800_000,
    3_600_000,
    7_200_000,
    10_800_000,
    21_600_000,
    43_200_000,
    86_400_000,
)
MIN_BUCKETS = 20


def default_bucket_ms(window_ms: int) -> int:
    """Largest ladder size dividing the window into at least MIN_BUCKETS buckets."""
    best = 0
    for size in BUCKET_LADDER_MS:
        if window_ms % size == 0 and window_ms // size >= MIN_BUCKETS:
            best = size
    if best == 0:
        raise ValueError(
            f"window {window_ms} ms cannot be split into >= {MIN_BUCKETS} buckets of a round size; "
            "use a multiple of 20s or set `resolution`"
        )
    return best


@dataclass(frozen=True, slots=True)
class Bucketing:
    window_ms: int
    bucket_ms: int
    lateness_ms: int

    def __post_init__(self) -> None:
        if self.window_ms <= 0 or self.bucket_ms <= 0 or self.window_ms % self.bucket_ms:
            raise ValueError("window must be a positive multiple of the bucket size")
        if self.lateness_ms < 0:
            raise ValueError("lateness must not be negative")

    @property
    def buckets(self) -> int:
        return self.window_ms // self.bucket_ms

    @property
    def late_buckets(self) -> int:
        return -(-self.lateness_ms // self.bucket_ms)

    def bucket_of(self, t_ms: int) -> int:
        return t_ms // self.bucket_ms

    def window_start_ms(self, end_bucket: int) -> int:
        """Start of the window ending at `end_bucket` (inclusive)."""
        return (end_bucket - self.buckets + 1) * self.bucket_ms

    def window_end_ms(self, end_bucket: int) -> int:
        """Exclusive end of the window ending at `end_bucket`."""
        return (end_bucket + 1) * self.bucket_ms


def window_sum(buckets: Mapping[int, int], end_bucket: int, n: int) -> int:
    return sum(v for i, v in buckets.items() if end_bucket - n < i <= end_bucket)


def busiest_window_containing(
    buckets: Mapping[int, int], bucket: int, n: int, newest: int
) -> tuple[int, int]:
    """(value, end bucket) of the largest window of n buckets that contains
    `bucket` and ends no later than `newest`. Ties go to the earliest window.
    The reference the Redis script is tested against."""
    best_value, best_end = -1, bucket
    for end in range(bucket, min(bucket + n - 1, newest) + 1):
        value = window_sum(buckets, end, n)
        if value > best_value:
            best_value, best_end = value, end
    return best_value, best_end


def retention_ms(window_ms: int, allowed_lateness_ms: int, dedup_horizon_ms: int) -> int:
    """How far behind the newest event time per-entity state must reach back."""
    return max(window_ms + allowed_lateness_ms, dedup_horizon_ms)
