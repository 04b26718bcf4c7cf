"""Batch delivery inside faust: each fetched partition batch goes to the
agents in one step, as one list of raw messages, and is acked in bulk.

faust hands records over one at a time: its drain loop runs
`wait_first(callback(message), suspend_flow.wait())` per record (four tasks
and three event-loop passes), its conductor takes a lock and builds an Event
per record, and every event is acked on its own. That costs 65-75 µs of CPU
per record before any work, several times what the worker's own pipeline
costs. This consumer keeps faust (the app, its agents, rebalances, commits,
the web server) and replaces only that path, through faust's extension
points: a Transport subclass (stream.kafka_transport's, which keeps the
per-partition fetches of stopped partitions) whose Consumer and Conductor
(stream.batch_conductor) are these.

The drain loop keeps faust's rules, applied per partition batch: records
below the read offset are skipped (already delivered), a batch is abandoned
when the group's generation changes or flow stops mid-fetch (a rebalance or
a stop: faust seeks back to the committed offsets afterwards), one
`wait_first` against `suspend_flow` per batch, `broker_commit_every`, and
the stalled-stream monitor's `stream_inbound_time`. What is committed comes
from stream.batch_acks: never past a record handed out and not acked, so a
record given up on a stop or a rebalance (`give_up`) is redelivered.

Agents take a batch with `track` (faust then waits for it before a rebalance
or a stop completes), and end it with `ack_batch` once applied, or
`give_up`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from time import monotonic
from typing import Any, cast

import faust
from faust.types import TP, Message
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from stream.batch_acks import AckBook
from stream.batch_conductor import BatchConductor
from stream.blocked import BlockedPartitions
from stream.kafka_transport import IsolatingConsumer, IsolatingTransport

__all__ = ["BATCH_QUEUE_MAX", "BatchConsumer", "BatchTransport", "install"]

log = logging.getLogger(__name__)
# Batches a channel's queue holds (faust's stream_buffer_maxsize counts queue
# items; here an item is a partition batch). Past 80 % the partition is not
# fetched until the agent takes one.
BATCH_QUEUE_MAX = 8
FETCHING = "FETCHING"  # faust's consumer diagnostics flag while fetching

Fetched = tuple[int, list[tuple[TP, list[Message]]]]  # generation, batches


class BatchConsumer(IsolatingConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.book = AckBook()
        self._pressured: set[TP] = set()

    # -- fetching and handing over ------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:
        """faust's drain loop, one step per partition batch. Runs until the
        fetcher or the consumer stops."""
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(FETCHING)
                fetched = await self._fetch_batches(timeout=1.0)
                await self.sleep(0)
                if fetched is not None and not self.should_stop:
                    await self._deliver_all(*fetched)
                self.diag.unset_flag(FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            log.info("broker stopped the consumer: shutting down")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
            log.info("consumer shutting down on cancel")
        except Exception as exc:
            log.exception("drain loop failed: %r", exc)
            raise
        finally:
            self.diag.unset_flag(FETCHING)

    async def _fetch_batches(self, timeout: float) -> Fetched | None:
        """faust's getmany, by partition: None when nothing is to be handed
        out (stopping, or flow stopped: then back to the committed offsets,
        as faust does)."""
        records, active = await self._wait_next_records(timeout)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return None
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:
                log.warning("seek while flow is stopped failed: %r", exc)
            return None
        batches: list[tuple[TP, list[Message]]] = []
        for tp, found in records.items():
            if not found:
                continue
            if not self._deliverable(tp, active):
                self.book.dropped(tp, found[0].offset)  # paused mid-fetch: keep it uncommitted
                continue
            self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
            messages: list[Message] = [self._to_message(tp, record) for record in found]
            batches.append((tp, messages))
        return generation, batches

    def _deliverable(self, tp: TP, active: set[TP] | None) -> bool:
        return (
            active is None
            or tp in active
            or tp in self._buffered_partitions
            or tp in self._pressured
        )

    async def _deliver_all(self, generation: int, batches: list[tuple[TP, list[Message]]]) -> None:
        for index, (tp, messages) in enumerate(batches):
            if self._interrupted(generation):
                for later, rest in batches[index:]:
                    self.book.dropped(later, rest[0].offset)
                return
            fresh = self._unread(tp, messages)
            if not fresh:
                continue
            await self._maybe_commit_every()
            self.book.delivered(tp, [m.offset for m in fresh])
            self.app.monitor.stream_inbound_time[tp] = monotonic()
            await self._hand_over(fresh)
            self._read_offset[tp] = fresh[-1].offset

    def _interrupted(self, generation: int) -> bool:
        """A rebalance or a stop began after the fetch: faust seeks every
        partition back to its committed offset before reading again."""
        return (
            self.should_stop
            or not self.flow_active
            or self.app.consumer_generation_id != generation
        )

    def _unread(self, tp: TP, messages: list[Message]) -> list[Message]:
        """faust's read-offset check: records below it were handed out already."""
        read = self._read_offset[tp]
        if read is None or messages[0].offset >= read:
            return messages
        fresh = [m for m in messages if m.offset >= read]
        log.debug(
            "%s: %d records below read offset %d skipped", tp, len(messages) - len(fresh), read
        )
        return fresh

    async def _maybe_commit_every(self) -> None:
        every = self._commit_every
        if every is not None and self._n_acked >= every:
            self._n_acked = 0
            await self.commit()

    async def _hand_over(self, messages: list[Message]) -> None:
        """One wait per batch: the conductor's put, or flow being suspended
        (a rebalance; the records stay pending until the seek after it).
        A cancellation that is not this task's own (a put waiter cancelled
        by a rebalance clearing the queue) must not end the drain loop."""
        try:
            await self.wait_first(cast(Any, self.callback)(messages), self.suspend_flow.wait())
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            log.info("hand-over of %d records cancelled by a rebalance", len(messages))

    # -- queue pressure (stream.batch_conductor) ------------------------------

    def on_batch_pressure(self, tp: TP) -> None:
        """The channel's queue is nearly full: stop fetching the partition
        (what faust's conductor does through on_buffer_full, kept apart from
        it: the event-time merge pauses partitions through that one)."""
        self._pressured.add(tp)
        self._get_active_partitions().discard(tp)

    def on_batch_relief(self, tp: TP) -> None:
        """The agent took a batch: fetch the partition again, unless it is
        paused for another reason (a rebalance, the merge)."""
        self._pressured.discard(tp)
        if tp in self._paused_partitions or tp in self._buffered_partitions:
            return
        if tp in self.assignment():
            self._get_active_partitions().add(tp)

    # -- agents' side -------------------------------------------------------

    def track(self, messages: Sequence[Message]) -> bool:
        """An agent takes a batch: False if it is stale (fetched before a
        rebalance or a stop began; faust reads it again after its seek)."""
        if not messages:
            return True
        if (
            not self.app.flow_control.is_active()
            or messages[0].generation_id != self.app.consumer_generation_id
        ):
            return False
        unacked = self._unacked_messages
        for message in messages:
            message.tracked = True
            unacked.add(message)
        return True

    def ack_batch(self, messages: Iterable[Message]) -> int:
        """Records applied: committable once every older one is (in any order)."""
        acked = 0
        book, unacked = self.book, self._unacked_messages
        with ack_lock:
            for message in messages:
                if message.acked:
                    continue
                if message.refcount > 1:
                    message.refcount -= 1
                    continue
                message.refcount = 0
                message.acked = True
                unacked.discard(message)
                if book.acked(message.tp, message.offset):
                    acked += 1
            self._n_acked += acked
            notify(self._waiting_for_ack)
        return acked

    def ack(self, message: Message) -> bool:
        return bool(self.ack_batch((message,)))

    def give_up(self, messages: Iterable[Message]) -> int:
        """Records not applied and not to be: they stay pending (nothing at or
        past them is committed) and are read again after the next seek, here
        or by the partition's next owner. faust stops waiting for them."""
        count = 0
        with ack_lock:
            for message in messages:
                if not message.acked:
                    message.acked = True
                    self._unacked_messages.discard(message)
                    count += 1
            notify(self._waiting_for_ack)
        return count

    # -- commits -------------------------------------------------------------

    def _new_offset(self, tp: TP) -> int | None:
        return self.book.commit_point(tp)

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Any:
        return (
            tp
            for tp in self.book.acked_partitions()
            if topics is None or tp in topics or cast(TP, tp).topic in topics
        )

    async def perform_seek(self) -> None:
        await super().perform_seek()
        self.reseek_book()

    def reseek_book(self) -> None:
        """After a seek to the committed offsets: only the records agents
        still work on stay pending (the others are read again)."""
        in_flight: dict[TP, list[int]] = {}
        for message in list(self._unacked_messages):
            if not message.acked:
                in_flight.setdefault(message.tp, []).append(message.offset)
        for tp in self.assignment():
            self.book.reseek(tp, in_flight.get(tp, ()))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """faust waits for the agents and commits (the revoked partitions'
        progress included) before the book forgets them."""
        try:
            await super().on_partitions_revoked(revoked)
        finally:
            for tp in revoked:
                self.book.forget(tp)
                self._pressured.discard(tp)


class BatchTransport(IsolatingTransport):
    Consumer = BatchConsumer
    Conductor = BatchConductor


def install(app: faust.App, blocked: BlockedPartitions) -> None:
    """Give `app` the batch transport (before any topic or agent is declared)."""
    log.info("input records are delivered to agents in partition batches")
    app.transport = BatchTransport(app.conf.broker_consumer, app, blocked=blocked)
