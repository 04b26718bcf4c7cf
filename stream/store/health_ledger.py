"""The merchant-health ledger: each merchant's confirmed violations and the
last snapshot published for it.

The rates need no state here: they are windowed aggregates, kept and read
with the rules' in the batch's one aggregate call (detectors.health_rates).
What is kept here is what no event stream can recount:
- **violations** (a freeze that stands, later a verdict), each with its
  source, severity, points, evidence ids, event time and expiry; written
  once (by id, so a retried batch or a redelivery adds nothing), removed by
  id when a freeze is released as a false positive or on appeal;
- **the last published snapshot** per merchant, which decides whether the
  next one is published (detectors.health_score.should_emit) and which
  `fraudstream health MERCHANT_ID` prints: its header line (score, band,
  time, model, trigger) is read with every batch, the records (a kilobyte
  or two) only when asked for (a redelivery, a release, the CLI);
- **the band history** per merchant (detectors.health_bands), which rules
  gated on the band read (with the rest, in the read that starts as a batch
  is judged).

Both backends (redis_health.py, MemoryHealthLedger here) answer alike; the
shared cases are in tests/store_cases/health.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from detectors.health_bands import BandHistory
from detectors.health_score import Violation, ViolationSource
from detectors.rules import Severity

__all__ = [
    "HealthLedger",
    "LedgerEntry",
    "MemoryHealthLedger",
    "MerchantHealthState",
    "entry_from_json",
    "entry_to_json",
    "header_of",
]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One violation of one merchant, as recorded. `points` and
    `expires_at_ms` are the model's when it was recorded (an audit of what
    it cost then); scoring applies the model in force."""

    merchant_id: str
    violation: Violation
    points: int
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class MerchantHealthState:
    violations: tuple[LedgerEntry, ...] = ()  # by violation id
    last: bytes | None = None  # the last published snapshot's header line
    alerts: tuple[tuple[str, int], ...] = ()  # (alert id, event ms) naming the merchant, by id
    bands: BandHistory = field(default_factory=BandHistory)
    records: bytes | None = None  # the whole last snapshot, when read with its records


EMPTY_STATE = MerchantHealthState()


def entry_to_json(e: LedgerEntry) -> bytes:
    v = e.violation
    wire: dict[str, Any] = {
        "merchant_id": e.merchant_id,
        "violation_id": v.violation_id,
        "source": v.source.value,
        "severity": v.severity.value,
        "points": e.points,
        "evidence": list(v.evidence),
        "occurred_at_ms": v.at_ms,
        "expires_at_ms": e.expires_at_ms,
        "rule_id": v.rule_id,
    }
    return orjson.dumps(wire)


def entry_from_json(raw: bytes | str) -> LedgerEntry:
    w = orjson.loads(raw)
    violation = Violation(
        w["violation_id"],
        ViolationSource(w["source"]),
        Severity(w["severity"]),
        int(w["occurred_at_ms"]),
        tuple(w["evidence"]),
        w["rule_id"],
    )
    return LedgerEntry(w["merchant_id"], violation, int(w["points"]), int(w["expires_at_ms"]))


def header_of(snapshot: bytes) -> bytes:
    """A saved snapshot's first line: what every batch reads of it."""
    return snapshot.split(b"\n", 1)[0]


class HealthLedger(Protocol):
    async def read(
        self, merchants: Sequence[str], records: bool = False
    ) -> dict[str, MerchantHealthState]:
        """Each merchant's violations and last snapshot's header (every
        merchant asked is in the answer; one without state has an empty
        one); with `records`, the whole last snapshot too."""

    async def record(self, entries: Sequence[LedgerEntry]) -> list[bool]:
        """Add violations; True for each one new (an id already recorded is
        left as it is). Results align with `entries`."""

    async def remove(self, violation_ids: Sequence[str]) -> list[str]:
        """Remove violations by id, whichever merchant holds them; returns
        the merchant of each id ever recorded, removed now or before (in the
        order of `violation_ids`), so a release retried after a crash
        re-scores the same merchants. The owner of an id is kept: freezes
        are few, and an id recorded again goes to the same merchant."""

    async def record_alerts(self, alerts: Sequence[tuple[str, str, int]]) -> None:
        """Remember alerts naming a merchant: (merchant, alert id, event ms),
        each once by id (the alert rate's numerator)."""

    async def save(
        self,
        snapshots: Mapping[str, bytes],
        moves: Mapping[str, int],
        forget: Mapping[str, Sequence[str]] | None = None,
        histories: Mapping[str, BandHistory] | None = None,
    ) -> None:
        """Remember each merchant's last published snapshot (its first line
        is the header `read` returns) and band history, add `moves` (band →
        change in merchants) to the band counts, and forget the alerts
        `forget` names per merchant (out of every window)."""

    @property
    def band_counts(self) -> Mapping[str, int]:
        """Merchants per band of their last snapshot, across every worker, as
        of this ledger's last `read` (which fetches them at no extra round
        trip) plus its own `save`s since."""


@dataclass(slots=True)
class MemoryHealthLedger:
    """The in-memory twin of RedisHealthLedger."""

    entries: dict[str, dict[str, LedgerEntry]] = field(default_factory=dict)
    owner: dict[str, str] = field(default_factory=dict)  # violation id → merchant
    last: dict[str, bytes] = field(default_factory=dict)
    alerts: dict[str, dict[str, int]] = field(default_factory=dict)
    histories: dict[str, BandHistory] = field(default_factory=dict)

    async def read(
        self, merchants: Sequence[str], records: bool = False
    ) -> dict[str, MerchantHealthState]:
        out = {}
        for m in merchants:
            held = self.entries.get(m, {})
            violations = tuple(held[k] for k in sorted(held))
            alerts = self.alerts.get(m, {})
            seen = tuple((a, alerts[a]) for a in sorted(alerts))
            history = self.histories.get(m, BandHistory())
            saved = self.last.get(m)
            header = header_of(saved) if saved is not None else None
            whole = saved if records else None
            out[m] = MerchantHealthState(violations, header, seen, history, whole)
        return out

    async def record(self, entries: Sequence[LedgerEntry]) -> list[bool]:
        out = []
        for e in entries:
            held = self.entries.setdefault(e.merchant_id, {})
            vid = e.violation.violation_id
            new = vid not in held
            if new:
                held[vid] = e
                self.owner[vid] = e.merchant_id
            out.append(new)
        return out

    async def remove(self, violation_ids: Sequence[str]) -> list[str]:
        out = []
        for vid in violation_ids:
            merchant = self.owner.get(vid)
            if merchant is not None:
                self.entries.get(merchant, {}).pop(vid, None)
                out.append(merchant)
        return out

    bands: dict[str, int] = field(default_factory=dict)

    async def record_alerts(self, alerts: Sequence[tuple[str, str, int]]) -> None:
        for merchant, alert_id, at_ms in alerts:
            self.alerts.setdefault(merchant, {}).setdefault(alert_id, at_ms)

    async def save(
        self,
        snapshots: Mapping[str, bytes],
        moves: Mapping[str, int],
        forget: Mapping[str, Sequence[str]] | None = None,
        histories: Mapping[str, BandHistory] | None = None,
    ) -> None:
        for merchant, ids in (forget or {}).items():
            for alert_id in ids:
                self.alerts.get(merchant, {}).pop(alert_id, None)
        self.last.update(snapshots)
        self.histories.update(histories or {})
        for band, n in moves.items():
            if n:
                self.bands[band] = self.bands.get(band, 0) + n

    @property
    def band_counts(self) -> Mapping[str, int]:
        return dict(self.bands)
