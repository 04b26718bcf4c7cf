"""The worker's agents on faust's per-record path (`take_events`), kept as
the fallback to batch delivery (`FRAUD_BATCH_DELIVERY=false`,
stream.batch_agents): each batch of faust events is applied directly, or
handed to the event-time merger and acked only once released and applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from detectors.events import Topic
from stream.alignment import EventTimeMerger, Held, merge_time
from stream.batch_agents import Acks
from stream.codec import Incoming
from stream.delivery import DeliveryTracker
from stream.faust_wiring import source_record
from stream.runner import BatchAbandoned, BatchRunner
from stream.settings import Settings

__all__ = ["EventAgents"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EventAgents:
    """Builds the per-topic agent functions of the take_events path."""

    settings: Settings
    runner: BatchRunner
    delivery: DeliveryTracker
    merger: EventTimeMerger
    acks: Acks
    wait_started: Callable[[], Awaitable[None]]
    release_held: Callable[[], Awaitable[None]]

    def agent_for(self, topic: Topic) -> Callable[[Any], Awaitable[None]]:
        settings = self.settings

        async def consume(stream: Any) -> None:
            if settings.align_enabled:
                await self.consume_merged(topic, stream)
                return
            async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
                max_bytes = settings.max_event_bytes
                items = [
                    Incoming.read(topic, source_record(ev.message), max_bytes) for ev in events
                ]
                try:
                    await self.wait_started()
                    with self.delivery.batch(i.record for i in items):
                        await self.runner.handle(items)
                except (asyncio.CancelledError, BatchAbandoned) as exc:
                    # Stopping mid-batch: take_events acks the batch in its
                    # `finally`. Marking the messages acked first turns that
                    # into a no-op, so these offsets are never committed and
                    # the batch is redelivered (faust's own stop waits for
                    # unacked messages, which this also releases).
                    self.acks.give_up(events)
                    log.warning("stopping: %d unapplied records left uncommitted", len(items))
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    return

        consume.__name__ = f"consume_{topic.name.lower()}"
        return consume

    async def consume_merged(self, topic: Topic, stream: Any) -> None:
        """Hand records to the merger (acked only once applied), then apply what
        it releases. Never waits for other topics: see stream.alignment. A
        record is committed only after its own ack: held ones are redelivered
        after a crash."""
        settings = self.settings
        try:
            async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
                await self.wait_started()
                now, wall_ms = time.monotonic(), int(time.time() * 1000)
                skew_ms = settings.max_future_skew_s * 1000
                held = []
                for ev in events:
                    # take_events acks every event of a batch when the next is
                    # asked for, noack() or not: one more reference makes that
                    # ack a non-final one, and ours (once applied) the final.
                    ev.message.incref()
                    item = Incoming.read(topic, source_record(ev.message), settings.max_event_bytes)
                    held.append(Held(merge_time(item.decoded, wall_ms, skew_ms), item, ev, now))
                self.merger.add(held)
                await self.release_held()
        except (asyncio.CancelledError, BatchAbandoned) as exc:
            left = self.merger.drain()
            self.acks.give_up(h.event for h in left)
            log.warning("stopping: %d unapplied records left uncommitted", len(left))
            if isinstance(exc, asyncio.CancelledError):
                raise
