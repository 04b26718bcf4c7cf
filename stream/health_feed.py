"""Merchant health in the live worker and the backtest alike: the last step
of a batch (stream.pipeline) and of a release (stream.releases).

Per batch, with a `health` section in the rules:
1. each freeze the batch publishes on a merchant (its subject, or the
   merchant its alert's evidence names) becomes a violation in the ledger,
   and each enforced alert naming a merchant is kept for the alert rate,
   dated at their trigger event (pipelined writes, only in batches that
   freeze or alert on a merchant; stream.health_sources);
2. the ledger of the batch's merchants is read (one pipelined read);
3. at every event of a merchant, in batch order, the merchant is scored
   on the rates the aggregate call returned for that event
   (detectors.health_rates), its alerts, violations and block-list entry, and
   the snapshot is published when detectors.health_score.should_emit says
   so; a band change also goes to `merchant-health-changes`;
4. the last published snapshot of each merchant is saved with its band
   history (detectors.health_bands, what band-gated rules read), and
   alerts out of every window forgotten (one pipelined write, only in
   batches that publish a snapshot or age an alert out).

Determinism (the backtest publishes what the worker does): the snapshot at
an event depends only on the events before it (the ledger holds the
violations and alerts of earlier batches; this batch's are seen from
their trigger event on), never on where a batch ends. The emit interval is
event time for the same reason: a wall-clock limit would publish
different snapshots for a backtest replaying a month in minutes, and for
each run of it. `computed_at` is the only wall-clock field.

At least once: the saved snapshot names the event that published it; a
batch redone after a crash republishes it byte for byte at that event
(an earlier snapshot of the same merchant in that batch, superseded on the
compacted topic, is not republished).

Analysts' verdicts (stream.health_verdicts) and releases re-score a
merchant at once, outside any batch (`HealthFeed.rescore`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from detectors import engine
from detectors.aggregates import Observation
from detectors.control_snapshot import ControlSnapshot
from detectors.events import SourcePosition, Topic
from detectors.health_bands import BandHistory
from detectors.health_model import Band, HealthModel, RateKind
from detectors.health_rates import HealthAggregates, alerts_within, health_aggregates
from detectors.health_score import (
    HealthInputs,
    RateCounts,
    Violation,
    score,
    should_emit,
)
from stream.batch_outputs import BatchResult, OutputRecord
from stream.codec import Decoded
from stream.health_records import Published, count_move, published_records
from stream.health_sources import block_listed, freeze_violations, merchant_alerts
from stream.settings import Settings
from stream.store.base import EventObservations, EventStatus, EventStore
from stream.store.health_ledger import HealthLedger, LedgerEntry, MerchantHealthState

__all__ = ["HealthFeed", "Publish", "Touch"]

log = logging.getLogger(__name__)


# (topic, key, value), returning once Kafka acknowledged it (stream.releases.Publish).
Publish = Callable[[str, bytes, bytes], Awaitable[None]]


class Touch(NamedTuple):
    """One event of a merchant and what the store observed for it (its
    rates are read from them only if the merchant is due a snapshot)."""

    merchant_id: str
    decoded: Decoded
    values: dict[str, Observation]


@dataclass(slots=True)
class _Merchant:
    """One merchant while a batch is scored."""

    visible: list[Violation]
    hidden: dict[str, list[Violation]]  # trigger event id → this batch's violations
    last: Published | None
    saved: Published | None = None
    start_band: Band | None = None  # the band it is counted in before the batch
    alerts: list[tuple[str, int]] = field(default_factory=list)  # (id, event ms) visible
    hidden_alerts: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    newest_ms: int = 0  # of the merchant's events in the batch
    bands: BandHistory = field(default_factory=BandHistory)


@dataclass(slots=True)
class HealthFeed:
    """`store`'s ledger is asked for on first use: a rule set without a
    `health` section never touches it."""

    settings: Settings
    store: EventStore
    _aggs: dict[int, HealthAggregates] = field(default_factory=dict)
    _ledger: HealthLedger | None = None
    # Told of the merchants per band after each batch and release (the worker's gauge).
    on_bands: Callable[[Mapping[str, int]], None] | None = None

    @property
    def ledger(self) -> HealthLedger:
        if self._ledger is None:
            self._ledger = self.store.health_ledger()
        return self._ledger

    def aggregates(self, model: HealthModel) -> HealthAggregates:
        key = id(model)
        if key not in self._aggs:
            self._aggs = {key: health_aggregates(model)}
        return self._aggs[key]

    async def conclude(
        self,
        planned: Sequence[tuple[Topic, Decoded, list[engine.GroupRequest]]],
        observations: Sequence[EventObservations],
        result: BatchResult,
        under: tuple[ControlSnapshot, HealthModel | None, str],
        now_ms: int,
        settled: Collection[SourcePosition] = frozenset(),
        since: tuple[int, int] = (0, 0),
        states: Awaitable[Mapping[str, MerchantHealthState]] | None = None,
    ) -> None:
        """`under`: the control snapshot, health model and ruleset_version
        the batch was judged under. `settled`: redelivered records whose
        outputs were delivered before (stream.delivery): not scored again,
        as they are not judged again. `since`: where this part of the batch
        starts in `result`'s freezes and published alerts (a batch concluded
        in segments shares one result, stream.pipeline). `states`: the
        ledger of the batch's merchants, read while it was judged (`prefetch`)."""
        control, model, version = under
        if model is None:
            return
        touches = _touches(planned, observations, settled)
        new = freeze_violations(result, model, since[0])
        alert_orders = self.aggregates(model).alert_orders
        alerts = merchant_alerts(result, since[1]) if alert_orders else []
        if states is None:
            states = self.prefetch(planned, observations)
        read, _ = await asyncio.gather(states, self._record(new, alerts))
        if not touches:
            return
        merchants = list(dict.fromkeys(t.merchant_id for t in touches))
        scored = {m: _start(m, read[m], new, alerts) for m in merchants}
        await self._redone(scored, touches)
        for t in touches:
            self._score(scored[t.merchant_id], t, (control, model, version), now_ms, result)
        saves = {m: s.saved.to_bytes() for m, s in scored.items() if s.saved is not None}
        histories = {m: s.bands for m, s in scored.items() if s.saved is not None}
        moves: dict[str, int] = {}
        for s in scored.values():
            if s.saved is not None:
                count_move(moves, s.start_band, s.saved.band)
        await self.save(saves, moves, self._stale(scored, model), histories)

    def prefetch(
        self,
        planned: Sequence[tuple[Topic, Decoded, list[engine.GroupRequest]]],
        observations: Sequence[EventObservations],
    ) -> asyncio.Task[dict[str, MerchantHealthState]]:
        """The ledger of every merchant the batch may score, read at once (as
        a task): it does not depend on how the batch is judged, so it
        overlaps the judging. The batch's own violations and alerts are
        added from their trigger events on by `conclude`, whether or not the
        read saw them recorded."""
        merchants = list(dict.fromkeys(t.merchant_id for t in _touches(planned, observations, ())))
        return asyncio.ensure_future(self.ledger.read(merchants))

    async def _redone(self, scored: Mapping[str, _Merchant], touches: Sequence[Touch]) -> None:
        """The whole last snapshot of each merchant whose last one this batch
        published before (a redelivery republishes it byte for byte); the
        ledger's read brought its header alone."""
        positions = {t.decoded.record.position.token() for t in touches}
        redone = [
            m for m, s in scored.items() if s.last is not None and s.last.trigger in positions
        ]
        if not redone:
            return
        for merchant, state in (await self.ledger.read(redone, records=True)).items():
            if state.records is not None:
                scored[merchant].last = Published.from_bytes(state.records)

    async def _record(
        self, new: list[tuple[str, LedgerEntry]], alerts: list[tuple[str, str, str, int]]
    ) -> None:
        """This batch's violations and alerts, before the ledger is read."""
        writes: list[Awaitable[Any]] = []
        if new:
            writes.append(self.ledger.record([e for _, e in new]))
        if alerts:
            writes.append(self.ledger.record_alerts([(m, a, t) for _, m, a, t in alerts]))
        await asyncio.gather(*writes)

    def _stale(self, scored: Mapping[str, _Merchant], model: HealthModel) -> dict[str, list[str]]:
        """Alerts older than any window a later event of the merchant can
        still be scored on (its newest event here, less the alert window and
        the allowed lateness: older events are refused by the aggregates)."""
        windows = self.aggregates(model).alert_orders
        if windows is None:
            return {}
        reach = windows[0] + self.settings.allowed_lateness_s * 1000
        out = {}
        for merchant, s in scored.items():
            old = [a for a, t in s.alerts if t <= s.newest_ms - reach]
            if old:
                out[merchant] = old
        return out

    async def save(
        self,
        saves: Mapping[str, bytes],
        moves: Mapping[str, int],
        forget: Mapping[str, list[str]] | None = None,
        histories: Mapping[str, BandHistory] | None = None,
    ) -> None:
        await self.ledger.save(saves, moves, forget, histories)
        if self.on_bands is not None:
            self.on_bands(self.ledger.band_counts)

    def _score(
        self,
        m: _Merchant,
        t: Touch,
        under: tuple[ControlSnapshot, HealthModel, str],
        now_ms: int,
        result: BatchResult,
    ) -> None:
        control, model, version = under
        event, merchant, at_ms = t.decoded.event, t.merchant_id, t.decoded.event.occurred_at_ms
        if m.hidden:
            m.visible += m.hidden.pop(event.event_id, [])
        if m.hidden_alerts:
            m.alerts += m.hidden_alerts.pop(event.event_id, [])
        m.newest_ms = max(m.newest_ms, at_ms)
        last = m.last
        if last is not None and last.trigger == t.decoded.record.position.token():
            self.publish_records(last, merchant, result)  # a batch redone: the same records again
            return
        if last is not None and at_ms - last.as_of_ms < model.emit_interval_ms:
            return  # should_emit would say no: the scoring is skipped
        counts = self._counts(m, t, model)
        if counts is None:
            return  # too late for a window: no rates to score on
        orders, rates = counts
        violations = [*m.visible, *block_listed(control, merchant, at_ms)]
        snap = score(HealthInputs(merchant, orders, violations, rates), model, at_ms)
        previous = last.as_snapshot(merchant) if last is not None else None
        remodelled = last is not None and last.model_version != model.score_model_version
        if not (should_emit(previous, snap, model) or remodelled):
            return
        trigger = t.decoded.record.position.token()
        published = published_records(snap, model, (orders, version, now_ms), (last, trigger))
        self.publish_records(published, merchant, result)
        m.last = m.saved = published
        m.bands = m.bands.with_snapshot(at_ms, snap.band, self.keep_from(model, at_ms))

    def keep_from(self, model: HealthModel, as_of_ms: int) -> int:
        """The oldest moment a band-gated rule may still ask about once a
        snapshot as of `as_of_ms` exists: an event of the merchant older than
        the duplicate horizon behind its newest is refused by the store, and
        the rule reads `band_delay` before its event."""
        return as_of_ms - model.band_delay_ms - self.settings.dedup_horizon_s * 1000

    def _counts(
        self, m: _Merchant, t: Touch, model: HealthModel
    ) -> tuple[int, dict[RateKind, RateCounts]] | None:
        """Orders and every measured rate as of the touch's event."""
        aggs = self.aggregates(model)
        counts = aggs.counts(t.values)
        if counts is None or aggs.alert_orders is None:
            return counts
        orders = aggs.alert_denominator(t.values)
        if orders is None:
            return None
        at_ms, window_ms = t.decoded.event.occurred_at_ms, aggs.alert_orders[0]
        alerts = alerts_within((ms for _, ms in m.alerts), at_ms, window_ms)
        counts[1][RateKind.ALERT_RATE] = RateCounts(alerts, orders)
        return counts

    def publish_records(self, p: Published, merchant: str, result: BatchResult) -> None:
        key = merchant.encode()
        topics = self.settings.topics
        result.outputs.append(OutputRecord(topics.merchant_health, key, p.wire))
        if p.change:
            result.outputs.append(OutputRecord(topics.merchant_health_changes, key, p.change))


def _touches(
    planned: Sequence[tuple[Topic, Decoded, list[engine.GroupRequest]]],
    observations: Sequence[EventObservations],
    settled: Collection[SourcePosition],
) -> list[Touch]:
    out = []
    for (_, d, _), obs in zip(planned, observations, strict=True):
        merchant = getattr(d.event, "merchant_id", None)
        if not merchant or obs.status is EventStatus.TOO_OLD:
            continue
        if settled and d.record.position in settled:
            continue
        out.append(Touch(merchant, d, obs.values))
    return out


def _start(
    merchant: str,
    state: MerchantHealthState,
    new: list[tuple[str, LedgerEntry]],
    alerts: list[tuple[str, str, str, int]],
) -> _Merchant:
    """A merchant's scoring state at the start of a batch: the violations
    and alerts of earlier batches are visible; this batch's from their
    trigger event on (the ledger may hold them already: a batch redone, or
    recorded before the read)."""
    mine = {e.violation.violation_id for _, e in new}
    visible = [e.violation for e in state.violations if e.violation.violation_id not in mine]
    last = Published.from_bytes(state.last) if state.last is not None else None
    m = _Merchant(visible, {}, last, start_band=last.band if last else None)
    m.bands = state.bands
    for trigger, e in new:
        if e.merchant_id == merchant:
            m.hidden.setdefault(trigger, []).append(e.violation)
    mine_alerts = {a for _, _, a, _ in alerts}
    m.alerts = [(a, t) for a, t in state.alerts if a not in mine_alerts]
    for trigger, named, alert_id, at_ms in alerts:
        if named == merchant:
            m.hidden_alerts.setdefault(trigger, []).append((alert_id, at_ms))
    return m
