"""The merchant-health records a batch or a release publishes, and how the
ledger keeps the last of them (stream.health_feed, stream.health_cli)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from detectors.health_model import Band, HealthModel
from detectors.health_score import HealthSnapshot
from detectors.health_wire import band_change_wire, snapshot_wire
from stream.store.health_ledger import MerchantHealthState

__all__ = ["Published", "count_move", "published_records", "stored_snapshot"]


@dataclass(frozen=True, slots=True)
class Published:
    """A merchant's last published snapshot as the ledger keeps it: what the
    next batch decides on (score, band, time, model) in a small header, and
    the records as published, kept as bytes (read once per batch, parsed
    only by a release or the CLI; republished byte for byte)."""

    score: int
    band: Band
    as_of_ms: int
    model_version: str
    trigger: str  # the position of the event that published it (or `release:<ids>`)
    wire: bytes  # the merchant-health record
    change: bytes = b""  # the merchant-health-changes record, if the band changed

    def to_bytes(self) -> bytes:
        header = [self.score, self.band.value, self.as_of_ms, self.model_version, self.trigger]
        return orjson.dumps(header) + b"\n" + self.wire + b"\n" + self.change

    @classmethod
    def from_bytes(cls, raw: bytes) -> Published:
        """The whole snapshot, or its header line alone (the ledger's `last`:
        records empty, what deciding the next snapshot needs)."""
        header, _, rest = raw.partition(b"\n")
        wire, _, change = rest.partition(b"\n")
        score_, band, as_of_ms, version, trigger = orjson.loads(header)
        return cls(score_, Band(band), as_of_ms, version, trigger, wire, change)

    def as_snapshot(self, merchant_id: str) -> HealthSnapshot:
        """For detectors.health_score.should_emit, which reads score, band and time."""
        return HealthSnapshot(
            merchant_id, self.score, self.band, (), (), self.model_version, self.as_of_ms
        )


def stored_snapshot(state: MerchantHealthState) -> dict[str, Any] | None:
    """The published snapshot a merchant's ledger holds (what the CLI
    prints), from a state read with its records."""
    if state.records is None:
        return None
    wire: dict[str, Any] = orjson.loads(Published.from_bytes(state.records).wire)
    return wire


def published_records(
    snap: HealthSnapshot,
    model: HealthModel,
    facts: tuple[int, str, int],
    after: tuple[Published | None, str],
) -> Published:
    """The records of `snap`. `facts`: its order volume, the ruleset_version
    and the wall clock; `after`: the merchant's last published snapshot,
    and what publishes this one (an event's position, or a release)."""
    orders, version, now_ms = facts
    previous, trigger = after
    wire = snapshot_wire(snap, model, orders, version, now_ms)
    change = b""
    if previous is None or previous.band is not snap.band:
        before = previous.band if previous else None
        change_wire = band_change_wire(wire, before, previous.score if previous else None)
        change = orjson.dumps(change_wire)
    return Published(
        snap.score,
        snap.band,
        snap.as_of_ms,
        snap.score_model_version,
        trigger,
        orjson.dumps(wire),
        change,
    )


def count_move(moves: dict[str, int], before: Band | None, after: Band) -> None:
    """Add a merchant's move between bands to `moves` (band → change)."""
    if before is after:
        return
    if before is not None:
        moves[before.value] = moves.get(before.value, 0) - 1
    moves[after.value] = moves.get(after.value, 0) + 1
