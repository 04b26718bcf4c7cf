"""The worker: one faust agent per input topic, each a thin adapter that
turns a batch of faust events into records for the BatchRunner, either
directly or through the event-time merge (stream.alignment), and the
protocol that decides when faust may commit them.

Input topics are raw bytes (we decode and dead-letter ourselves). Agents run
with concurrency=1: faust can commit past an unfinished offset with more
(faust issue #606); scale out with partitions and worker processes instead.

A record's offset is committed only after the record is applied: on the
merged path a record is acked once the merge has released and applied it;
records given up (a stop, a rebalance, a revoked partition) are never
committed and are redelivered to the partition's next owner. With batch
delivery (the default) agents receive partition batches of raw messages
(stream.batch_agents); otherwise faust events from `take_events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

from detectors.control import ControlKind
from detectors.control_snapshot import ControlSnapshot
from stream.alignment import EventTimeMerger, Held, Part
from stream.batch_agents import BatchAgents, acks_for
from stream.blocked import BlockedPartitions
from stream.codec import Incoming
from stream.control_follower import ControlFollower, Rejected
from stream.delivery import DeliveryTracker, SettledRecords
from stream.event_agents import EventAgents
from stream.faust_wiring import faust_app, topic_partitions
from stream.frontier_exchange import FrontierExchange
from stream.guard_publisher import ControlPublisher
from stream.health import install_pages
from stream.health_rescore import release_hook, verdict_hook
from stream.kafka_security import aiokafka_security
from stream.lag import LAG_INTERVAL_S, LagMonitor
from stream.metrics import Metrics
from stream.pipeline import OutputRecord, Pipeline
from stream.pipelined import PipelinedRunner
from stream.releases import RELEASE_INTERVAL_S, ReleaseDesk, ReleaseTimer, acked_publisher
from stream.rules_loading import load_rulebook
from stream.ruleset_status import RulesetStatus
from stream.runner import BatchAbandoned, BatchRunner
from stream.settings import Settings
from stream.store.redis_freezes import RedisFreezeBook
from stream.store_wiring import open_store
from stream.verdict_follower import VerdictFollower
from stream.watchdog import EPOCH_INTERVAL_S, StoreWatchdog

__all__ = ["FRONTIER_INTERVAL_S", "MERGE_INTERVAL_S", "Worker"]

log = logging.getLogger(__name__)
MERGE_INTERVAL_S = 0.2  # how often held records are re-checked when no batch arrives
# How often frontiers are exchanged with the group's other workers while this
# one holds records: each round lets a backlog advance by about the slack.
FRONTIER_INTERVAL_S = 0.005
# How often a stopping worker gives back what agents still hand to the merger.
STOP_DRAIN_INTERVAL_S = 0.1


class Worker:
    """Owns the app, the store and the runner; builds the agents."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.blocked = BlockedPartitions(settings.blocked_retry_s, self.metrics.observe_blocked)
        self.app = faust_app(settings, blocked=self.blocked)
        self.store = open_store(settings)
        self.store.observer = self.metrics.observe_redis
        rulebook = load_rulebook(settings)
        self.metrics.rules_loaded.labels(rulebook.name, rulebook.version).set(len(rulebook.rules))
        self.freeze_book = RedisFreezeBook(self.store.client, self.store.namespace)
        self.freeze_book.observer = self.metrics.observe_redis
        self.pipeline = Pipeline(settings, self.store, rulebook, self.freeze_book)
        self.pipeline.guard.on_control = ControlPublisher(self.app, settings, self.metrics)
        self.ruleset_status = RulesetStatus(self.metrics)
        self.delivery = DeliveryTracker(partial(self.store.advance_delivered, settings.app_id))
        self.settled = SettledRecords(partial(self.store.delivered, settings.app_id))
        self.pipeline.settled = self.settled
        self.control = ControlFollower(
            settings.kafka_bootstrap,
            settings.topics.control,
            on_rejected=self._control_rejected,
            on_snapshot=self._control_changed,
            client_options=aiokafka_security(settings.kafka_security),
            on_accepted=self.ruleset_status.accepted,
        )
        self._outputs = {
            name: self.app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            )
            for name in settings.topics.outputs()
        }
        self.pipeline.health.on_bands = self.metrics.observe_health_bands
        publish = acked_publisher(self._outputs)
        health, under = self.pipeline.health, self.pipeline.health_under
        rescore = release_hook(health, under, publish)
        security = aiokafka_security(settings.kafka_security)
        self.verdicts = VerdictFollower(
            settings, verdict_hook(health, under, publish), publish, security
        )
        self.releases = ReleaseTimer(
            ReleaseDesk(settings, self.freeze_book, publish, on_released=rescore),
            lambda: self.watchdog.started.is_set() and self.control.ready.is_set(),
            lambda: self.control.snapshot,
            self.metrics,
        )
        self.acks = acks_for(settings, self.app)  # held records: acked or given up
        self.runner = BatchRunner(
            settings,
            self.pipeline,
            self._publish,
            self.metrics,
            should_stop=lambda: bool(self.app.should_stop),
        )
        # Released records: prepared and judged while the store applies the batch before.
        self.pipelined = PipelinedRunner(self.runner, self.pipeline, self.delivery.batch)
        self.watchdog = StoreWatchdog(self.store, self.metrics, settings.retry_max_backoff_s)
        self._merge_lock = asyncio.Lock()
        self.lag = LagMonitor(
            self.app,
            settings,
            self.metrics,
            self.blocked,
            self.runner.positions,
            self._merge_lock,
            self._delivered,
        )
        self.merger = self._build_merger()
        self.frontiers = FrontierExchange(
            self.store.client,
            self.store.namespace,
            settings.app_id,
            settings.topics.inputs().values(),
            self.merger,
            settings.align_stall_s,
        )
        self._last_share = 0.0
        self._topic_of = {name: topic for topic, name in settings.topics.inputs().items()}
        self._stalled_logged: frozenset[Part] = frozenset()
        self._build_agents()
        self._build_timers()

    def _build_merger(self) -> EventTimeMerger:
        settings = self.settings
        return EventTimeMerger(
            settings.topics.inputs().values(),
            slack_ms=int(settings.align_slack_s * 1000),
            stall_s=settings.align_stall_s,
            max_held=settings.align_max_held,
            lagging=self.lag.lagging,
            stuck=self.lag.stuck,
        )

    def _build_timers(self) -> None:
        install_pages(
            self.app,
            self.store,
            self.watchdog,
            self.control.ready,
            self.runner,
            self.blocked,
            self.metrics,
        )
        self.app.task(self.watchdog.start)
        self.app.task(self.control.run)
        self.app.task(self.verdicts.run)
        self.app.task(self.delivery.run)
        self.app.on_partitions_revoked.connect(self.settled.on_rebalance)
        self.app.timer(LAG_INTERVAL_S)(self.lag.update)
        self.app.timer(EPOCH_INTERVAL_S)(self.watchdog.check_epoch)
        self.app.timer(RELEASE_INTERVAL_S)(self.releases.tick)
        if self.settings.align_enabled:
            self.app.timer(MERGE_INTERVAL_S)(self._release_held_on_timer)
            self.app.task(self._leave_held_when_stopping)
            self.app.timer(FRONTIER_INTERVAL_S)(self._exchange_frontiers)
            self.app.on_partitions_revoked.connect(self._on_revoked)

    def _control_changed(self, snapshot: ControlSnapshot) -> None:
        """The pipeline's next batch is judged under `snapshot` (one reference
        swap: a batch under way keeps the one it read), and by its rule set."""
        self.pipeline.control = snapshot
        self.ruleset_status.in_effect(self.pipeline.rules())
        self.metrics.control_kill_switch.set(1 if snapshot.kill_switch else 0)
        self.metrics.breaker_tripped.set(1 if snapshot.breaker_tripped else 0)
        kinds = Counter(record.kind.value for record in snapshot.records.values())
        for kind in ControlKind:
            self.metrics.control_records.labels(kind.value).set(kinds.get(kind.value, 0))
        log.info(
            "control snapshot %d in effect: kill switch %s, %d records",
            snapshot.applied,
            "ON" if snapshot.kill_switch else "off",
            len(snapshot.records),
        )

    def _control_rejected(self, item: Rejected) -> None:
        self.metrics.control_rejected.labels(item.error.kind).inc()
        self.ruleset_status.refused(item)

    async def _wait_started(self) -> None:
        """No decision before the store is up and the control snapshot is read:
        deciding without it could freeze an allow-listed merchant."""
        await self.watchdog.started.wait()
        await self.control.ready.wait()

    def _delivered(self, part: Part) -> int | None:
        return self.merger.delivered(part)

    async def _release_held_on_timer(self) -> None:
        """Held records wait for other partitions; re-check them even when no
        new batch arrives. A stopping worker's records are already abandoned."""
        if not self.watchdog.started.is_set():
            return  # agents wait for the store: no partition can be behind yet
        with contextlib.suppress(BatchAbandoned):
            await self._release_held()

    async def _leave_held_when_stopping(self) -> None:
        """A stopping worker gives its held records back at once, uncommitted.
        faust waits for every unacked record before it stops, but once it
        stops fetching (and its timers) nothing releases held records any
        more: the wait would last until the process is killed. Records an
        agent still hands to the merger meanwhile are given back too."""
        await self.app.wait_until_stopped()
        while True:
            left = self.merger.drain()
            if left:
                log.warning("stopping: %d held records left uncommitted", len(left))
                self.acks.give_up(h.event for h in left)
            await asyncio.sleep(STOP_DRAIN_INTERVAL_S)

    async def _exchange_frontiers(self) -> None:
        """Share frontiers with the group's other workers (stream.frontier_exchange):
        every round while records are held, at the merge's pace otherwise,
        and release at once what a moved remote frontier lets through."""
        consumer, now = self.app.consumer, time.monotonic()
        if consumer is None or getattr(self.app, "rebalancing", False):
            return
        if not self.watchdog.started.is_set():
            return
        if not len(self.merger) and now - self._last_share < MERGE_INTERVAL_S:
            return
        self._last_share = now
        owned = [
            (tp.topic, tp.partition) for tp in consumer.assignment() if tp.topic in self._topic_of
        ]
        before = self.merger.remote
        await self.frontiers.share(owned, int(time.time() * 1000))
        if len(self.merger) and self.merger.remote != before:
            with contextlib.suppress(BatchAbandoned):
                await self._release_held()

    async def _release_held(self) -> None:
        """Apply whatever the merger lets through: event-time order across topics."""
        async with self._merge_lock:
            if getattr(self.app, "rebalancing", False):
                # A rebalance waits for unacked records. Applying held ones now
                # would apply them out of event-time order (the partitions they
                # wait for may be moving); give them back instead: uncommitted,
                # they are redelivered to whoever owns their partition next.
                self.acks.give_up(h.event for h in self.merger.drain())
                return
            try:
                while ready := self.merger.take_ready(self.settings.batch_max):
                    await self._apply_released(ready)
            finally:
                self._apply_flow()

    async def _apply_released(self, ready: list[Held]) -> None:
        """Hand released records on to be applied behind the batch in the
        store (stream.pipelined); they are acked once applied and published,
        or given up, uncommitted, if the worker stops first."""
        for h in ready:
            if h.incomplete:
                self.metrics.degraded_records.labels(h.record.topic).inc()
        started = time.monotonic()
        events = [h.event for h in ready]

        def done(applied: bool) -> None:
            (self.acks.ack if applied else self.acks.give_up)(events)

        try:
            await self.pipelined.submit([self._judged_as(h) for h in ready], done)
        finally:
            self.merger.excuse(time.monotonic() - started)

    def _judged_as(self, h: Held) -> Incoming:
        """The held record, marked with the input topics it is judged without."""
        if not h.incomplete:
            return h.item
        stalled = frozenset(self._topic_of[n] for n in h.incomplete)
        return dataclasses.replace(h.item, incomplete=stalled)

    def _apply_flow(self) -> None:
        """Pause the partitions that are ahead while too much is held, resume
        them once drained (stream.alignment: backpressure keeps memory bounded
        without giving up on the order); export the merge's state."""
        pauses = self.merger.pauses
        flow = self.merger.flow()
        self.metrics.pauses.inc(self.merger.pauses - pauses)
        consumer = self.app.consumer
        if consumer is not None:
            # faust's own buffer-pressure hooks: the partition is no longer
            # fetched, yet records already fetched for it are still delivered
            # (`pause_partitions` would drop those mid-batch and faust would
            # then commit past them as a gap).
            for tp in topic_partitions(flow.pause):
                consumer.on_buffer_full(tp)
            for tp in topic_partitions(flow.resume):
                consumer.on_buffer_drop(tp)
        oldest = self.merger.oldest_since()
        self.metrics.held_records.set(len(self.merger))
        self.metrics.hold_age.set(0.0 if oldest is None else time.monotonic() - oldest)
        self.metrics.paused_partitions.set(len(self.merger.paused))
        self._log_stalled()
        stalled = Counter(name for name, _ in self.merger.stalled)
        for name in self._topic_of:
            self.metrics.stalled_partitions.labels(name).set(stalled.get(name, 0))

    def _log_stalled(self) -> None:
        """Log when the set of stalled partitions changes, not on every round."""
        if self.merger.stalled == self._stalled_logged:
            return
        self._stalled_logged = self.merger.stalled
        if self._stalled_logged:
            log.warning(
                "input partitions stalled behind held records (decisions reading their "
                "topics are degraded until they move): %s",
                ", ".join(f"{t}/{p}" for t, p in sorted(self._stalled_logged)),
            )
        else:
            log.info("no input partition is stalled any more")

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kw: Any) -> None:
        """Held records of revoked partitions go back to Kafka, unacked: their
        new owner starts from the committed offset."""
        revoked = args[0] if args else kw.get("revoked", ())
        parts = [(tp.topic, tp.partition) for tp in revoked]
        self.acks.give_up(h.event for h in self.merger.drop(parts))
        self.lag.forget(parts)

    async def _publish(self, outputs: Sequence[OutputRecord]) -> None:
        # send() only enqueues into the producer's batch; faust flushes the
        # producer before it commits input offsets, so outputs land first.
        # The future it returns resolves on delivery (stream.delivery).
        for out in outputs:
            sent = await self._outputs[out.topic].send(key=out.key, value=out.value)
            self.delivery.sent(sent)

    def _build_agents(self) -> None:
        batches = BatchAgents(
            self.settings,
            self.app,
            self.runner,
            self.delivery,
            self.merger,
            self._wait_started,
            self._release_held,
        )
        events = EventAgents(
            self.settings,
            self.runner,
            self.delivery,
            self.merger,
            self.acks,
            self._wait_started,
            self._release_held,
        )
        for topic, name in self.settings.topics.inputs().items():
            channel = self.app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            )
            agents = batches if self.settings.batch_delivery else events
            self.app.agent(channel, name=f"consume-{topic.value}", concurrency=1)(
                agents.agent_for(topic)
            )
