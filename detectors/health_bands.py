"""Which health band a merchant was in at a moment: what a rule gated on the
band (`requires: [{health_band: critical}]`) reads.

A rule reads the band its merchant had `band_delay` (an hour by default)
before the event, never the band of the same moment. Snapshots are scored
after a batch is judged (stream.health_feed), so "the band now" would be
the band after the last batch, which depends on where batches were cut: a
backtest cutting batches elsewhere, or a worker catching up on a backlog in
larger batches, would decide differently. With the delay, the answer
depends only on snapshots at or before `t - delay`, and the pipeline cuts
a batch wherever it spans more than the delay in event time (`segments`),
so each of those snapshots is in the ledger before the event is judged,
however the batches fall.

Health moves over days: an hour's delay costs a payout hold nothing that
matters, and it is the price of deciding the same on every replay.

The history kept per merchant is its band changes, oldest first, trimmed to
what a later event can still ask: every change after `keep_from_ms` and the
last one at or before it (stream.health_feed chooses the horizon).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from detectors.health_model import Band

__all__ = ["BandHistory", "BandLookup", "lookup_bands", "no_bands", "segments"]

# (merchant id, event ms) → the merchant's band as a rule reads it, None
# when it had no snapshot then.
BandLookup = Callable[[str, int], Band | None]


def no_bands(merchant_id: str, at_ms: int) -> Band | None:
    """The lookup of a rule set that reads no band."""
    return None


@dataclass(frozen=True, slots=True)
class BandHistory:
    """One merchant's band changes: (as_of ms, band), as_of increasing."""

    changes: tuple[tuple[int, Band], ...] = ()

    def band_at(self, at_ms: int) -> Band | None:
        """The band of the last change at or before `at_ms`."""
        found = None
        for as_of, band in self.changes:
            if as_of > at_ms:
                break
            found = band
        return found

    def with_snapshot(self, as_of_ms: int, band: Band, keep_from_ms: int) -> BandHistory:
        """After a published snapshot: a change when its band differs from the
        last one (a re-score at the same moment, a release, replaces it);
        then what lies before `keep_from_ms` is dropped but for the last
        change at or before it, which still answers for that moment."""
        changes = list(self.changes)
        if changes and changes[-1][0] >= as_of_ms:
            changes = [c for c in changes if c[0] < as_of_ms]
        if not changes or changes[-1][1] is not band:
            changes.append((as_of_ms, band))
        first = 0
        for i, (as_of, _) in enumerate(changes):
            if as_of <= keep_from_ms:
                first = i
        return BandHistory(tuple(changes[first:]))

    def to_bytes(self) -> bytes:
        return orjson.dumps([[as_of, band.value] for as_of, band in self.changes])

    @classmethod
    def from_bytes(cls, raw: bytes | str | None) -> BandHistory:
        if not raw:
            return cls()
        return cls(tuple((int(as_of), Band(band)) for as_of, band in orjson.loads(raw)))


def lookup_bands(histories: Mapping[str, BandHistory], delay_ms: int) -> BandLookup:
    """The merchants' bands as band-gated rules read them: `delay_ms` back."""
    if not histories:
        return no_bands

    def lookup(merchant_id: str, at_ms: int) -> Band | None:
        found = histories.get(merchant_id)
        return found.band_at(at_ms - delay_ms) if found is not None else None

    return lookup


def segments(times_ms: Sequence[int], delay_ms: int) -> list[int]:
    """Where a batch (event times in batch order) is cut so that no event is
    judged in the same segment as an earlier one at or before its own time
    less `delay_ms`: the start index of each segment, 0 first. An empty
    batch has no segment."""
    starts: list[int] = []
    low = 0
    for i, t in enumerate(times_ms):
        if not starts or t - delay_ms >= low:
            starts.append(i)
            low = t
        else:
            low = min(low, t)
    return starts
