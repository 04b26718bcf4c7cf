"""faust's conductor, handing one list of raw messages per channel.

faust's conductor takes a lock, awaits flow control, the producer buffer and
a decode coroutine, and builds an Event, for every record
(faust/transport/conductor.py). Here each partition batch the drain loop
hands over (stream.batch_delivery) is put on each subscribed channel's queue
as one list of faust Messages: agents receive lists of raw records (the
worker's input topics are raw bytes; it decodes and dead-letters itself).
The lock, flow control and the producer-buffer wait are taken once per
batch; everything else (which channels subscribe to which partition, the
resubscription after a rebalance) is faust's own.

A queue item is a batch, so a channel's queue (`stream_buffer_maxsize`)
counts batches. Past its high-pressure mark the partition is no longer
fetched until the agent has taken a batch: the drain loop then never blocks
on one slow agent while another topic waits. A full queue is waited for in a
task of its own, as faust's conductor does: a rebalance clears the queue and
cancels the waiting put, and that cancellation must end the put, not the
drain loop (a CancelledError escaping the drain loop during a rebalance
kills the worker: faust's Fetcher wakes a supervisor it does not have).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, MutableSet, Sequence
from typing import Any, cast

from faust.transport.conductor import Conductor
from faust.types import TP, Message

__all__ = ["BatchConductor", "PartitionHandler"]


class PartitionHandler:
    """Delivers one partition's batches to the channels subscribing to it
    (faust's ConductorCompiler.build, per batch)."""

    def __init__(
        self,
        app: Any,
        tp: TP,
        channels: MutableSet[Any],
        pressure: Callable[[TP], None],
        relief: Callable[[TP], None],
    ) -> None:
        self.tp = tp
        self.channels = channels
        self._acquire_flow = app.flow_control.acquire
        self._producer_ebb = app.producer.buffer.wait_until_ebb
        self._on_full = app.sensors.on_topic_buffer_full
        self._pressure = pressure
        self._relief = relief

    def _high(self) -> None:
        self._on_full(self.tp)
        self._pressure(self.tp)

    def _drop(self) -> None:
        self._relief(self.tp)

    async def __call__(self, messages: Sequence[Message]) -> None:
        await self._acquire_flow()
        await self._producer_ebb()
        subscribers = len(self.channels)
        if not subscribers:
            return  # nobody reads it: the records stay pending until a seek
        for message in messages:
            message.refcount += subscribers  # each subscriber acks once
        full = []
        for channel in self.channels:
            queue = channel.queue
            if queue.full():
                full.append(channel)
                continue
            queue.put_nowait_enhanced(
                messages, on_pressure_high=self._high, on_pressure_drop=self._drop
            )
        if full:
            self._on_full(self.tp)
            waiting = [asyncio.ensure_future(channel.put(messages)) for channel in full]
            await asyncio.wait(waiting, return_when=asyncio.ALL_COMPLETED)


class BatchConductor(Conductor):
    """`on_message` takes one partition's list of messages, not one message."""

    def _compile_message_handler(self) -> Any:
        callbacks = self._tp_to_callback
        lock = self._tp_to_callback_lock

        async def on_batch(messages: Sequence[Message]) -> None:
            async with lock:
                handler = callbacks.get(messages[0].tp)
            if handler is not None:  # not subscribed (yet): pending until a seek
                await cast(Any, handler)(messages)

        return on_batch

    def _build_handler(self, tp: TP, channels: MutableSet[Any]) -> Any:
        consumer = self.app.consumer
        pressure = getattr(consumer, "on_batch_pressure", consumer.on_buffer_full)
        relief = getattr(consumer, "on_batch_relief", consumer.on_buffer_drop)
        return PartitionHandler(self.app, tp, channels, pressure, relief)
