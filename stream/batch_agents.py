"""The worker's agents when records arrive in partition batches
(stream.batch_delivery), and how held records are acked either way.

An agent receives lists of raw faust messages, one fetched partition batch
each, and ends every record in one of two ways: acked once it is applied and
its outputs are queued (`ack_batch`: committable once every older record of
its partition is), or given up when the worker stops, rebalances or loses
the partition (`give_up`: never committed, read again by the partition's
next reader). On the direct path a batch is applied at once (in slices of
`batch_max`); on the merged path its records go to the event-time merger
(stream.alignment) and are acked only once released and applied.

`Acks` is the one place the worker acks or gives up held records, so the
merge code is the same for both delivery paths: faust Events (take_events)
or raw messages (batch delivery).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import faust

from detectors.events import Topic
from stream.alignment import EventTimeMerger, Held, merge_time
from stream.batch_delivery import BatchConsumer
from stream.codec import Incoming
from stream.delivery import DeliveryTracker
from stream.faust_wiring import abandon, source_record
from stream.runner import BatchAbandoned, BatchRunner
from stream.settings import Settings

__all__ = ["Acks", "BatchAcks", "BatchAgents", "EventAcks", "acks_for"]

log = logging.getLogger(__name__)


class Acks(Protocol):
    def ack(self, held: Iterable[Any]) -> None: ...
    def give_up(self, held: Iterable[Any]) -> None: ...


class EventAcks:
    """faust Events (take_events): acked one by one; given up by flagging
    their messages acked without an ack (faust then never commits them)."""

    def ack(self, held: Iterable[Any]) -> None:
        for event in held:
            event.ack()

    def give_up(self, held: Iterable[Any]) -> None:
        abandon(event.message for event in held)


class BatchAcks:
    """Raw messages (batch delivery): acked and given up in bulk."""

    def __init__(self, app: faust.App) -> None:
        self.app = app

    def _consumer(self) -> BatchConsumer:
        return cast(BatchConsumer, self.app.consumer)

    def ack(self, held: Iterable[Any]) -> None:
        self._consumer().ack_batch(held)

    def give_up(self, held: Iterable[Any]) -> None:
        self._consumer().give_up(held)


def acks_for(settings: Settings, app: faust.App) -> Acks:
    return BatchAcks(app) if settings.batch_delivery else EventAcks()


@dataclass(frozen=True)
class BatchAgents:
    """Builds the per-topic agent functions of the batch path."""

    settings: Settings
    app: faust.App
    runner: BatchRunner
    delivery: DeliveryTracker
    merger: EventTimeMerger
    wait_started: Callable[[], Awaitable[None]]
    release_held: Callable[[], Awaitable[None]]

    def consumer(self) -> BatchConsumer:
        return cast(BatchConsumer, self.app.consumer)

    def agent_for(self, topic: Topic) -> Callable[[Any], Awaitable[None]]:
        async def consume(stream: Any) -> None:
            if self.settings.align_enabled:
                await self.consume_merged(topic, stream)
            else:
                await self.consume_direct(topic, stream)

        consume.__name__ = f"consume_{topic.name.lower()}"
        return consume

    async def batches(self, stream: Any) -> AsyncIterator[list[Any]]:
        """The agent's batches, tracked: one from the stream, plus whatever
        other partitions' batches are already queued, up to batch_max. A
        batch fetched before a rebalance is skipped (faust reads it again)."""
        consumer, limit = self.consumer(), self.settings.batch_max
        queue = getattr(getattr(stream, "channel", None), "queue", None)
        async for messages in stream:
            taken = list(messages) if consumer.track(messages) else []
            while queue is not None and len(taken) < limit and not queue.empty():
                more = queue.get_nowait()
                if consumer.track(more):
                    taken.extend(more)
            if taken:
                yield taken

    async def consume_direct(self, topic: Topic, stream: Any) -> None:
        """Apply each batch as it comes (in slices of batch_max), then ack it."""
        size = self.settings.batch_max
        async for messages in self.batches(stream):
            for start in range(0, len(messages), size):
                if not await self._apply(topic, messages, start, start + size):
                    return

    async def _apply(self, topic: Topic, messages: list[Any], start: int, end: int) -> bool:
        """False: the worker is stopping and the rest of the batch is given up."""
        consumer, chunk = self.consumer(), messages[start:end]
        max_bytes = self.settings.max_event_bytes
        items = [Incoming.read(topic, source_record(m), max_bytes) for m in chunk]
        try:
            await self.wait_started()
            with self.delivery.batch(i.record for i in items):
                await self.runner.handle(items)
        except (asyncio.CancelledError, BatchAbandoned) as exc:
            left = consumer.give_up(messages[start:])
            log.warning("stopping: %d unapplied records left uncommitted", left)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
        consumer.ack_batch(chunk)
        return True

    async def consume_merged(self, topic: Topic, stream: Any) -> None:
        """Hand records to the merger, then apply what it releases; a record
        is acked only once released and applied (stream.worker's merge)."""
        consumer = self.consumer()
        try:
            async for messages in self.batches(stream):
                try:
                    await self.wait_started()
                except asyncio.CancelledError:
                    consumer.give_up(messages)
                    raise
                self.merger.add(self._held(topic, messages))
                await self.release_held()
        except (asyncio.CancelledError, BatchAbandoned) as exc:
            left = self.merger.drain()
            consumer.give_up(h.event for h in left)
            log.warning("stopping: %d unapplied records left uncommitted", len(left))
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _held(self, topic: Topic, messages: list[Any]) -> list[Held]:
        settings = self.settings
        now, wall_ms = time.monotonic(), int(time.time() * 1000)
        skew_ms, max_bytes = settings.max_future_skew_s * 1000, settings.max_event_bytes
        held = []
        for message in messages:
            item = Incoming.read(topic, source_record(message), max_bytes)
            held.append(Held(merge_time(item.decoded, wall_ms, skew_ms), item, message, now))
        return held
