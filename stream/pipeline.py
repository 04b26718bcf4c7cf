"""One batch of decoded input records → the records to publish.

The single code path shared by the live worker, the backtest and replay:
dead-letter what failed to decode or is dated too far ahead, update and
read aggregates in the store, judge rules in the pure core, settle
incidents, derive freezes, build output records. It knows nothing of
faust; the caller supplies decoded records (codec.Incoming) and the
current time and publishes the outputs.

Every step is idempotent, so the caller may retry a whole batch after any
transient failure without changing a count or an id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors import engine
from detectors.control import ListName
from detectors.control_effects import block_list_alerts, steer
from detectors.control_snapshot import EMPTY, ControlSnapshot, fold
from detectors.control_watch import Watch
from detectors.decisions import (
    degrade,
)
from detectors.events import Topic
from detectors.health_bands import BandLookup, lookup_bands, no_bands, segments
from detectors.health_model import HealthModel
from detectors.rulebook import Rulebook
from detectors.rules import ActionKind, Mode, Rule
from stream.active_rules import ActiveRules, RulesSelector
from stream.batch_outputs import BatchResult, OutputRecord, count, dead_letter_output
from stream.codec import DeadLetter, Decoded, Incoming
from stream.delivery import SettledRecords, unsettled
from stream.enforcement_guard import EnforcementGuard
from stream.health_feed import HealthFeed
from stream.paid_out_step import mark_paid_out
from stream.settings import Settings
from stream.settlement import Pending, Settlement
from stream.store.base import (
    EventObservations,
    EventRequests,
    EventStatus,
    EventStore,
)
from stream.store.freezes import FreezeBook
from stream.store.health_ledger import MerchantHealthState

__all__ = ["BatchResult", "OutputRecord", "Pipeline", "Prepared", "dead_letter_output"]

log = logging.getLogger(__name__)
# What a batch is judged under: the control snapshot, its watch list, the
# rules, and the merchants' health bands.
_Under = tuple[ControlSnapshot, Watch, ActiveRules, BandLookup]


@dataclass(slots=True)
class Prepared:
    result: BatchResult
    planned: list[tuple[Topic, Decoded, list[engine.GroupRequest]]]
    events: list[EventRequests]  # what the store is asked, aligned with `planned`
    incomplete: dict[int, frozenset[Topic]]  # position in `planned` → stalled topics
    admitted: list[Decoded] = field(default_factory=list)  # every valid event, in order
    # What the batch is judged under, taken once at prepare (see stream.active_rules).
    control: ControlSnapshot = EMPTY
    rules: ActiveRules | None = None


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        rulebook: Rulebook,
        freeze_book: FreezeBook | None = None,
    ) -> None:
        """`freeze_book`: where published freezes are registered (stream.releases);
        None publishes them unregistered (a backtest's scratch run)."""
        self.freeze_book = freeze_book
        self.settings = settings
        self._settings = settings
        self._store = store
        self.rulebook = rulebook  # the rules file's; a ruleset record overrides it
        # Replaced as a whole by whoever follows the control topic; each
        # batch reads it once, so a batch is judged under one snapshot.
        self.control: ControlSnapshot = EMPTY
        self.guard = EnforcementGuard(settings, store, rulebook.rules)
        self._rules = RulesSelector(rulebook, on_change=self._rules_changed)
        # Set by the live worker (stream.delivery): records whose decisions
        # were delivered before a redelivery are not judged again. The
        # backtest and replay read each record once and leave it None.
        self.settled: SettledRecords | None = None
        self._settlement = Settlement(settings, store, self.guard, freeze_book)
        self.health = HealthFeed(settings, store)  # merchant health (stream.health_feed)

    async def process_mixed(self, items: Sequence[Incoming], now_ms: int) -> BatchResult:
        """A batch whose records may come from several input topics, in order
        (the backtest's case: a file interleaves topics line by line)."""
        return await self.execute(self.prepare(items, now_ms), now_ms)

    def prepare(self, items: Sequence[Incoming], now_ms: int) -> Prepared:
        """The CPU-only half (validate, plan the store's requests):
        no I/O, so a caller may prepare the next batch while the store works
        on this one."""
        result, control = BatchResult(), self.control
        rules = self._rules.under(control)
        valid = self._admit(items, now_ms, result)
        result.valid = len(valid)
        for _, _, d in valid:
            name = d.record.topic
            result.valid_by_topic[name] = result.valid_by_topic.get(name, 0) + 1
        plan = rules.plan.requests
        indexed = [(i, t, d, reqs) for i, t, d in valid if (reqs := plan(t, d.event))]
        planned = [(t, d, reqs) for _, t, d, reqs in indexed]
        events = [
            EventRequests(d.event.event_id, d.event.occurred_at_ms, r, d.event.currency)
            for _, d, r in planned
        ]
        stalled = {
            j: items[i].incomplete for j, (i, *_) in enumerate(indexed) if items[i].incomplete
        }
        admitted = [d for _, _, d in valid]
        return Prepared(result, planned, events, stalled, admitted, control, rules)

    async def observe(
        self, prepared: Prepared, after: asyncio.Event | None = None
    ) -> list[EventObservations]:
        """Apply the prepared batch in the store: its one I/O-bound step
        (`after`: see EventStore.apply), after marking refunds of paid-out
        orders when the rules read that (stream.paid_out_step)."""
        rules = prepared.rules
        if rules is not None and rules.paid_out:
            batch = (prepared.admitted, prepared.planned, prepared.events)
            await mark_paid_out(batch, self._store.payout_book(), rules.plan, after)
            after = None  # the book's turn came after it
        return await self._store.apply(prepared.events, after)

    async def execute(self, prepared: Prepared, now_ms: int) -> BatchResult:
        return await self.conclude(prepared, await self.observe(prepared), now_ms)

    async def conclude(
        self, prepared: Prepared, observations: list[EventObservations], now_ms: int
    ) -> BatchResult:
        """Judge the batch on what the store observed and settle incidents;
        the merchants' health ledger is read meanwhile. Under rules gated on
        a health band, in segments that each read it first (their band
        histories: detectors.health_bands says why)."""
        rules = prepared.rules or self.rules()
        model = rules.rulebook.health
        if model is None:
            return await self._conclude(prepared, observations, now_ms, no_bands, None)
        if not rules.bands_read:
            states = self.health.prefetch(prepared.planned, observations)
            return await self._guarded(prepared, observations, now_ms, no_bands, states)
        for part, seen in _segments(prepared, observations, model.band_delay_ms):
            states = self.health.prefetch(part.planned, seen)
            try:
                histories = {m: state.bands for m, state in (await states).items()}
                bands = lookup_bands(histories, model.band_delay_ms)
            except BaseException:
                _discard(states)
                raise
            await self._guarded(part, seen, now_ms, bands, states)
        return prepared.result

    async def _guarded(
        self,
        prepared: Prepared,
        observations: list[EventObservations],
        now_ms: int,
        bands: BandLookup,
        states: asyncio.Task[dict[str, MerchantHealthState]],
    ) -> BatchResult:
        """`_conclude`, leaving no ledger read behind when it fails."""
        try:
            return await self._conclude(prepared, observations, now_ms, bands, states)
        except BaseException:
            _discard(states)
            raise

    async def _conclude(
        self,
        prepared: Prepared,
        observations: list[EventObservations],
        now_ms: int,
        bands: BandLookup,
        states: asyncio.Task[dict[str, MerchantHealthState]] | None,
    ) -> BatchResult:
        result, planned = prepared.result, prepared.planned
        since = (len(result.freezes), len(result.published_alerts))
        control, rules = prepared.control, prepared.rules or self.rules()
        under = (control, Watch.of(control), rules, bands)
        settled = await self.settled.settled(prepared.admitted) if self.settled else frozenset()
        for position in settled:
            count(result.settled, position.topic)
        self._block_list(unsettled(prepared.admitted, settled), under, now_ms, result)
        pending: list[Pending] = []
        for j, ((topic, d, reqs), obs) in enumerate(zip(planned, observations, strict=True)):
            key = (d.record.topic, obs.status)
            result.statuses[key] = result.statuses.get(key, 0) + 1
            if obs.status is EventStatus.TOO_OLD:
                continue
            if settled and d.record.position in settled:
                continue  # judged and delivered before this redelivery
            # Duplicates are judged too: if a crash hit between the two store
            # calls, this is the only chance to settle the incident.
            observed = obs.values
            late = _late_updates(reqs, observed)
            if late:
                result.late_values += late
                name = d.record.topic
                result.late_by_topic[name] = result.late_by_topic.get(name, 0) + late
            stalled = prepared.incomplete.get(j)
            pending += self._judge(topic, d, obs, now_ms, result, stalled, under)
        await self.guard.note_merchants(d.event for d in prepared.admitted)
        if issued := await self._settlement.settle(pending, result, control, now_ms):
            # The guard's records (a demotion, a trip) steer this worker at once.
            self.control = fold([(r.key(), r) for r in issued], self.control)
        health = (control, rules.rulebook.health, rules.version)
        await self.health.conclude(
            planned, observations, result, health, now_ms, settled, since, states
        )
        return result

    def _block_list(
        self, admitted: list[Decoded], under: _Under, now_ms: int, result: BatchResult
    ) -> None:
        """An alert on every event of a block-listed entity, whatever the rules."""
        control, watch, rules, _ = under
        if not control.has_list(ListName.BLOCK):
            return
        topic = self._settings.topics.alerts
        for d in admitted:
            for listed in block_list_alerts(control, d.event, d.record.topic, now_ms):
                alert = dataclasses.replace(
                    watch.tag(listed, d.event), ruleset_version=rules.version
                )
                result.block_list_alerts += 1
                payload = orjson.dumps(alert.to_wire())
                result.outputs.append(OutputRecord(topic, alert.entity_id.encode(), payload))

    def _admit(
        self, items: Sequence[Incoming], now_ms: int, result: BatchResult
    ) -> list[tuple[int, Topic, Decoded]]:
        """The decoded records, by position in `items`; dead letters go to
        `result`. The future-skew check is against the time of processing,
        not of decoding: a record held by the merge is judged when released."""
        skew_ms = self._settings.max_future_skew_s * 1000
        out = []
        for i, incoming in enumerate(items):
            item = incoming.decoded
            if isinstance(item, Decoded) and item.event.occurred_at_ms > now_ms + skew_ms:
                item = DeadLetter(
                    item.record,
                    "bad_time",
                    f"occurred_at is more than {self._settings.max_future_skew_s}s in the future",
                    "occurred_at",
                )
            if isinstance(item, DeadLetter):
                result.dead_letters.append(item)
                result.outputs.append(dead_letter_output(item, self._settings, now_ms))
            else:
                out.append((i, incoming.topic, item))
        return out

    def _judge(
        self,
        topic: Topic,
        d: Decoded,
        obs: EventObservations,
        now_ms: int,
        result: BatchResult,
        stalled: frozenset[Topic] | None,
        under: _Under,
    ) -> list[Pending]:
        """A failing rule is recorded (metric, log), never allowed to stop the batch.
        A rule reading a `stalled` topic decides in degraded form (no freeze).
        The control snapshot then steers the decision (detectors.control_effects)
        and the watch list tags it (detectors.control_watch)."""
        out = []
        control, watch, rules, bands = under
        membership, version = watch.membership, rules.version
        for rule in rules.plan.judges[topic]:
            try:
                candidate = engine.evaluate(
                    rule,
                    topic,
                    d.record.topic,
                    d.event,
                    obs.values,
                    now_ms,
                    membership,
                    version,
                    bands,
                    obs.counted,
                )
            except Exception:
                log.exception("rule %s failed on event %s", rule.rule_id, d.event.event_id)
                result.rule_failures[rule.rule_id] = result.rule_failures.get(rule.rule_id, 0) + 1
                continue
            if candidate is None:
                continue
            missing = stalled & rules.reads[rule.rule_id] if stalled else None
            if missing:
                candidate = degrade(candidate, (t.value for t in missing))
            at_ms = d.event.occurred_at_ms
            steered = steer(control, candidate, at_ms, not missing and _freezes(rule))
            if steered.candidate is None:
                count(result.silenced, steered.silence)
                continue
            judged_by = rule
            if steered.candidate.alert.mode is not rule.mode:  # forced by a rule-mode record
                judged_by = dataclasses.replace(rule, mode=steered.candidate.alert.mode)
            tagged = watch.tag_candidate(steered.candidate, d.event)
            out.append(Pending(d, judged_by, tagged, bool(missing), steered.suppressed))
        return out

    def rules(self) -> ActiveRules:
        """The rules the next batch is judged by (under the current snapshot)."""
        return self._rules.under(self.control)

    def _rules_changed(self, rules: ActiveRules) -> None:
        self.guard.follow(rules.rulebook.rules)

    def health_under(self) -> tuple[ControlSnapshot, HealthModel | None, str]:
        """What merchant health is scored under now (stream.health_feed)."""
        rules = self.rules()
        return self.control, rules.rulebook.health, rules.version


def _discard(task: asyncio.Task[Any]) -> None:
    """A task nobody will await: cancelled, or its failure retrieved (it is
    the batch's own failure's consequence, reported by the retry)."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _segments(
    prepared: Prepared, observations: list[EventObservations], delay_ms: int
) -> list[tuple[Prepared, list[EventObservations]]]:
    """The batch cut where detectors.health_bands.segments says, each part
    sharing the batch's result; one part when nothing needs a cut."""
    admitted = prepared.admitted
    starts = segments([d.event.occurred_at_ms for d in admitted], delay_ms)
    if len(starts) <= 1:
        return [(prepared, observations)]
    part_of: dict[int, int] = {}
    for k, (a, b) in enumerate(zip(starts, [*starts[1:], len(admitted)], strict=True)):
        part_of.update((id(d), k) for d in admitted[a:b])
    parts: list[tuple[Prepared, list[EventObservations]]] = [
        (dataclasses.replace(prepared, planned=[], events=[], incomplete={}, admitted=[]), [])
        for _ in starts
    ]
    for d in admitted:
        parts[part_of[id(d)]][0].admitted.append(d)
    for j, (item, obs) in enumerate(zip(prepared.planned, observations, strict=True)):
        part, seen = parts[part_of[id(item[1])]]
        if j in prepared.incomplete:
            part.incomplete[len(part.planned)] = prepared.incomplete[j]
        part.planned.append(item)
        part.events.append(prepared.events[j])
        seen.append(obs)
    return [(p, o) for p, o in parts if p.admitted]


def _freezes(rule: Rule) -> bool:
    """The rule as written would freeze when it fires."""
    action = rule.action
    return (
        action.kind is not ActionKind.ALERT
        and rule.mode is Mode.ENFORCE
        and action.duration_ms is not None
    )


def _late_updates(
    requests: Sequence[engine.GroupRequest], observed: dict[str, engine.Observation]
) -> int:
    """Updates refused as too late. Only what the event adds counts: a group
    also reads aggregates no rule of this event needs, and a late read of
    one of those is no lost update."""
    if all(o.value is not None for o in observed.values()):
        return 0
    return sum(
        1
        for req in requests
        for spec, c in zip(req.group.specs, req.contributions, strict=True)
        if c is not None and observed[spec.agg_id].value is None
    )
