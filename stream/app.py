"""The Faust app: one agent per input topic, each a thin adapter that turns a
batch of faust events into SourceRecords and hands them to the BatchRunner.

Input topics are raw bytes (we decode and dead-letter ourselves). Agents run
with concurrency=1: faust can commit past an unfinished offset with more
(faust issue #606); scale out with partitions and worker processes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from detectors.events import Topic
from stream.alignment import EventTimeMerger, Held, Part, merge_time
from stream.blocked import BlockedPartitions
from stream.codec import SourceRecord, decode
from stream.kafka_transport import install as install_transport
from stream.metrics import Metrics
from stream.pipeline import OutputRecord, Pipeline
from stream.rules_loading import load_rulebook, open_store
from stream.runner import BatchAbandoned, BatchRunner
from stream.settings import KafkaProtocol, KafkaSecurity, Settings

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 5.0
EPOCH_INTERVAL_S = 5.0
MERGE_INTERVAL_S = 0.2  # how often held records are re-checked when no batch arrives


def kafka_credentials(security: KafkaSecurity) -> Any:
    """faust credentials for the configured protocol (None: plaintext)."""
    context = None
    if security.protocol in (KafkaProtocol.SSL, KafkaProtocol.SASL_SSL):
        context = ssl.create_default_context(
            cafile=str(security.ssl_cafile) if security.ssl_cafile else None
        )
        if security.ssl_certfile:
            context.load_cert_chain(
                str(security.ssl_certfile),
                str(security.ssl_keyfile) if security.ssl_keyfile else None,
            )
    if security.protocol is KafkaProtocol.SSL:
        return faust.SSLCredentials(context)
    if security.protocol in (KafkaProtocol.SASL_PLAINTEXT, KafkaProtocol.SASL_SSL):
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            mechanism=security.sasl_mechanism,
            ssl_context=context,
        )
    return None


def faust_app(
    settings: Settings, web_enabled: bool = True, blocked: BlockedPartitions | None = None
) -> faust.App:
    """A faust.App configured only from Settings: `env={}` stops faust from
    letting variables like BROKER_URL or WEB_PORT override our settings."""
    app = faust.App(
        settings.app_id,
        env={},
        broker=f"kafka://{settings.kafka_bootstrap}",
        broker_credentials=kafka_credentials(settings.kafka_security),
        store="memory://",
        datadir=settings.data_dir,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=settings.kafka_heartbeat_s,
        consumer_auto_offset_reset="earliest",
        topic_replication_factor=1,
        topic_partitions=settings.dev_partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        producer_linger=0.005,
        producer_max_request_size=4 * 1024 * 1024,
        worker_redirect_stdouts=False,
        web_enabled=web_enabled,
    )
    if blocked is None:
        blocked = BlockedPartitions(settings.blocked_retry_s)
    install_transport(app, blocked)
    return app


def faust_worker(app: faust.App, log_level: str) -> faust.Worker:
    """faust's worker, without its terminal spinner. At WARNING and above the
    spinner sets the root logger to DEBUG (it spins on every record), so every
    debug call in aiokafka and faust builds a LogRecord nobody prints (3.5 %
    of a worker's profile samples in `bench --quick`; they are per request
    and per fetch, so loaded runs showed no difference beyond the noise)."""
    worker = faust.Worker(app, loglevel=log_level.lower())
    worker.spinner = None
    return worker


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
        self.pipeline = Pipeline(settings, self.store, rulebook)
        self._outputs = {
            name: self.app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            )
            for name in settings.topics.outputs()
        }
        self.merger = EventTimeMerger(
            settings.topics.inputs().values(),
            slack_ms=int(settings.align_slack_s * 1000),
            stall_s=settings.align_stall_s,
            max_held=settings.align_max_held,
            lagging=self._lagging,
            stuck=self._stuck,
        )
        self._topic_of = {name: topic for topic, name in settings.topics.inputs().items()}
        self._merge_lock = asyncio.Lock()
        # Partitions whose high watermark is a transaction marker past the last
        # record (value: that high watermark), and what the lag timer last saw.
        self._marker_end: dict[Part, int] = {}
        self._stalled_logged: frozenset[Part] = frozenset()
        self._ends: dict[Part, tuple[int, int]] = {}
        # Consumer positions of partitions nothing was applied from yet (lag timer).
        self._positions: dict[tuple[str, int], int] = {}
        self.runner = BatchRunner(
            settings,
            self.pipeline,
            self._publish,
            self.metrics,
            should_stop=lambda: bool(self.app.should_stop),
        )
        self._store_started = asyncio.Event()
        self._build_agents()
        self._build_pages()
        self.app.task(self._start_store)
        self.app.timer(LAG_INTERVAL_S)(self._update_lag)
        self.app.timer(EPOCH_INTERVAL_S)(self._check_store_epoch)
        if settings.align_enabled:
            self.app.timer(MERGE_INTERVAL_S)(self._release_held_on_timer)
            self.app.on_partitions_revoked.connect(self._on_revoked)

    async def _start_store(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self.store.start()
                self.metrics.store_up.set(1)
                self._store_started.set()
                return
            except Exception as exc:
                log.warning("Redis not ready (%s); retrying in %.1fs", exc, backoff)
                self.metrics.store_up.set(0)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.retry_max_backoff_s)

    async def _check_store_epoch(self) -> None:
        if not self._store_started.is_set():
            return
        try:
            intact = await self.store.check_epoch()
        except Exception as exc:  # an outage is reported by the batch path
            log.debug("epoch check skipped: %s", exc)
            return
        if not intact:
            self.metrics.store_wipes.inc()
            log.error(
                "Redis lost its state (restart without persistence, flush or failover): "
                "windows and duplicate guards restart from zero. Rebuild them with "
                "`fraudstream replay --since <time>` (see README, Guarantees)."
            )

    async def _update_lag(self) -> None:
        """Lag per topic, in records (high watermark - next offset to process)
        and in seconds (age of the last processed record while behind)."""
        consumer = self.app.consumer
        if consumer is None:
            return
        now = time.time()
        records: dict[str, int] = {}
        seconds: dict[str, float] = {}
        inputs = set(self.settings.topics.inputs().values())
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            highwater = consumer.highwater(tp)
            done = self.runner.positions.get((tp.topic, tp.partition))
            if highwater is None or highwater < 0:
                continue
            await self._note_marker_gap(tp, highwater)
            if done:
                next_offset = done[0] + 1
            else:
                next_offset = await consumer.position(tp) or 0
                self._positions[(tp.topic, tp.partition)] = next_offset
            behind = max(highwater - next_offset, 0)
            if self._marker_end.get((tp.topic, tp.partition)) == highwater:
                behind = 0  # only transaction markers are left
            records[tp.topic] = records.get(tp.topic, 0) + behind
            age = now - done[1] / 1000 if behind and done and done[1] > 0 else 0.0
            seconds[tp.topic] = max(seconds.get(tp.topic, 0.0), age)
        for topic in inputs:
            self.metrics.lag_records.labels(topic).set(records.get(topic, 0))
            self.metrics.lag_seconds.labels(topic).set(seconds.get(topic, 0.0))

    async def _note_marker_gap(self, tp: Any, highwater: int) -> None:
        """A partition written by a transactional producer ends with a commit
        marker, which is never delivered: its high watermark stays one past
        the last record. When the fetch position has reached the high
        watermark, faust has handed out nothing the merger lacks, and that
        held for a whole interval with the merge idle, the gap is markers,
        not records: the partition is caught up (else the merge would wait
        for it until it counts as stalled)."""
        consumer = self.app.consumer
        if consumer is None or getattr(self.app, "rebalancing", False):
            return
        key = (tp.topic, tp.partition)
        read_at = getattr(consumer, "_read_offset", {}).get(tp)
        delivered = self.merger.delivered(key)
        if delivered is None:  # since the assignment: faust's read offset is the committed one
            last = read_at - 1 if read_at is not None else None
        elif read_at is not None and read_at > delivered:
            return  # handed to an agent, not yet to the merger
        else:
            last = delivered
        if last is None or highwater <= last + 1 or self._merge_lock.locked():
            self._ends.pop(key, None)
            return
        try:
            position = await consumer.position(tp)
        except Exception as exc:  # revoked meanwhile: decide on the next round
            log.debug("position of %s unavailable: %s", tp, exc)
            return
        if position is not None and position >= highwater:
            if self._ends.get(key) == (last, highwater):
                self._marker_end[key] = highwater
            self._ends[key] = (last, highwater)

    def _lagging(self) -> list[tuple[str, int]]:
        """Owned input partitions whose records have not all reached the merger.
        Unknown counts as lagging (a partition not fetched yet after a start
        or a rebalance): holding briefly is safe, racing ahead is not. A stopped
        partition (stream.blocked) is lagging too; the merger treats it as
        stalled at once, so decisions reading its topic are degraded."""
        consumer = self.app.consumer
        if consumer is None:
            return []
        inputs = set(self.settings.topics.inputs().values())
        read = getattr(consumer, "_read_offset", {})  # faust: committed offset after a seek
        out = []
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            key = (tp.topic, tp.partition)
            delivered = self.merger.delivered(key)
            if delivered is not None:
                next_offset: int | None = delivered + 1
            else:
                # Nothing delivered yet: the committed offset, else the position
                # the lag timer last read (a group without commits).
                next_offset = read.get(tp)
                if next_offset is None:
                    next_offset = self._positions.get((tp.topic, tp.partition))
            highwater = consumer.highwater(tp)
            if highwater is None or next_offset is None:
                out.append((tp.topic, tp.partition))
            elif highwater > next_offset and self._marker_end.get(key) != highwater:
                out.append(key)
        return out

    def _stuck(self) -> set[Part]:
        """Partitions stopped at a batch the worker cannot read: stalled now."""
        return set(self.blocked.partitions())

    async def _release_held_on_timer(self) -> None:
        """Held records wait for other partitions; re-check them even when no
        new batch arrives. A stopping worker's records are already abandoned."""
        if not self._store_started.is_set():
            return  # agents wait for the store: no partition can be behind yet
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
                left = self.merger.drain()
                _abandon(h.event.message for h in left)
                return
            try:
                while ready := self.merger.take_ready(self.settings.batch_max):
                    await self._apply_released(ready)
            finally:
                self._apply_flow()

    async def _apply_released(self, ready: list[Held]) -> None:
        incomplete = [frozenset(self._topic_of[n] for n in h.incomplete) for h in ready]
        for h in ready:
            if h.incomplete:
                self.metrics.degraded_records.labels(h.record.topic).inc()
        started = time.monotonic()
        try:
            await self.runner.handle_mixed(
                [(h.topic, h.record) for h in ready],
                [h.decoded for h in ready],
                incomplete if any(incomplete) else None,
            )
        except (asyncio.CancelledError, BatchAbandoned):
            _abandon(h.event.message for h in ready)  # redelivered, never committed
            raise
        finally:
            self.merger.excuse(time.monotonic() - started)
        for h in ready:
            h.event.ack()

    def _apply_flow(self) -> None:
        """Pause the partitions that are ahead while too much is held, resume
        them once drained (stream.alignment: backpressure instead of giving
        up on the order); export the merge's state."""
        pauses = self.merger.pauses
        flow = self.merger.flow()
        self.metrics.pauses.inc(self.merger.pauses - pauses)
        consumer = self.app.consumer
        if consumer is not None:
            # faust's own buffer-pressure hooks: the partition is no longer
            # fetched, yet records already fetched for it are still delivered
            # (`pause_partitions` would drop those mid-batch and faust would
            # then commit past them as a gap).
            for tp in _tps(flow.pause):
                consumer.on_buffer_full(tp)
            for tp in _tps(flow.resume):
                consumer.on_buffer_drop(tp)
        oldest = self.merger.oldest_since()
        self.metrics.held_records.set(len(self.merger))
        self.metrics.hold_age.set(0.0 if oldest is None else time.monotonic() - oldest)
        self.metrics.paused_partitions.set(len(self.merger.paused))
        if self.merger.stalled != self._stalled_logged:
            self._stalled_logged = self.merger.stalled
            if self._stalled_logged:
                log.warning(
                    "input partitions stalled behind held records (decisions reading their "
                    "topics are degraded until they move): %s",
                    ", ".join(f"{t}/{p}" for t, p in sorted(self._stalled_logged)),
                )
            else:
                log.info("no input partition is stalled any more")
        stalled = Counter(name for name, _ in self.merger.stalled)
        for name in self._topic_of:
            self.metrics.stalled_partitions.labels(name).set(stalled.get(name, 0))

    async def _on_revoked(self, sender: Any, /, *args: Any, signal: Any, **kw: Any) -> None:
        """Held records of revoked partitions go back to Kafka, unacked: their
        new owner starts from the committed offset."""
        revoked = args[0] if args else kw.get("revoked", ())
        parts = [(tp.topic, tp.partition) for tp in revoked]
        released = self.merger.drop(parts)
        _abandon(h.event.message for h in released)
        for part in parts:
            self._marker_end.pop(part, None)
            self._ends.pop(part, None)
            self._positions.pop(part, None)

    async def _publish(self, outputs: Sequence[OutputRecord]) -> None:
        # send() only enqueues into the producer's batch; faust flushes the
        # producer before it commits input offsets, so outputs land first.
        for out in outputs:
            await self._outputs[out.topic].send(key=out.key, value=out.value)

    def _build_agents(self) -> None:
        for topic, name in self.settings.topics.inputs().items():
            channel = self.app.topic(
                name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
            )
            self.app.agent(channel, name=f"consume-{topic.value}", concurrency=1)(
                self._agent_for(topic)
            )

    def _agent_for(self, topic: Topic) -> Any:
        settings = self.settings

        async def consume(stream: Any) -> None:
            if settings.align_enabled:
                await self._consume_merged(topic, stream)
                return
            async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
                records = [_record(ev.message) for ev in events]
                try:
                    await self._store_started.wait()
                    await self.runner.handle(topic, records)
                except (asyncio.CancelledError, BatchAbandoned) as exc:
                    # Stopping mid-batch: take_events acks the batch in its
                    # `finally`. Marking the messages acked first turns that
                    # into a no-op, so these offsets are never committed and
                    # the batch is redelivered (faust's own stop waits for
                    # unacked messages, which this also releases).
                    _abandon(ev.message for ev in events)
                    log.warning("stopping: %d unapplied records left uncommitted", len(records))
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    return

        consume.__name__ = f"consume_{topic.name.lower()}"
        return consume

    async def _consume_merged(self, topic: Topic, stream: Any) -> None:
        """Hand records to the merger (acked only once applied), then apply what
        it releases. Never waits for other topics: see stream.alignment. A
        record is committed only after its own ack: held ones are redelivered
        after a crash."""
        settings = self.settings
        try:
            async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
                await self._store_started.wait()
                now, wall_ms = time.monotonic(), int(time.time() * 1000)
                skew_ms = settings.max_future_skew_s * 1000
                held = []
                for ev in events:
                    # take_events acks every event of a batch when the next is
                    # asked for, noack() or not: one more reference makes that
                    # ack a non-final one, and ours (once applied) the final.
                    ev.message.incref()
                    record = _record(ev.message)
                    item = decode(topic, record, settings.max_event_bytes)
                    at = merge_time(item, wall_ms, skew_ms)
                    held.append(Held(at, topic, record, item, ev, now))
                self.merger.add(held)
                await self._release_held()
        except (asyncio.CancelledError, BatchAbandoned) as exc:
            left = self.merger.drain()
            _abandon(h.event.message for h in left)
            log.warning("stopping: %d unapplied records left uncommitted", len(left))
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _build_pages(self) -> None:
        worker = self

        @self.app.page("/livez")
        async def livez(view: Any, request: Any) -> Any:
            return view.json({"status": "alive"})

        @self.app.page("/readyz")
        async def readyz(view: Any, request: Any) -> Any:
            store_ok = worker._store_started.is_set() and await worker.store.ping()
            assigned = len(worker.app.consumer.assignment()) if worker.app.consumer else 0
            rebalancing = bool(getattr(worker.app, "rebalancing", False))
            blocked = worker.blocked.snapshot()
            ready = store_ok and worker.runner.store_healthy and not rebalancing and not blocked
            body = {
                "ready": ready,
                "redis": store_ok,
                "rebalancing": rebalancing,
                "assigned_partitions": assigned,
                "blocked_partitions": [b.as_dict() for b in blocked],
            }
            return view.json(body, status=200 if ready else 503)

        @self.app.page("/metrics")
        async def metrics(view: Any, request: Any) -> Any:
            return view.bytes(
                generate_latest(worker.metrics.registry),
                headers={"Content-Type": CONTENT_TYPE_LATEST},
            )


def _record(message: Any) -> SourceRecord:
    return SourceRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int((message.timestamp or 0) * 1000),
    )


def _tps(parts: Iterable[Part]) -> list[TP]:
    return [TP(topic, partition) for topic, partition in parts]


def _abandon(messages: Any) -> None:
    """Leave messages uncommitted on purpose: flagging them acked keeps faust
    from registering an ack (so the offset is never committed and the record
    is redelivered) and releases faust's wait for unacked messages on stop."""
    for message in messages:
        message.acked = True
