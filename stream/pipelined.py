"""The live worker's overlap of Python and the store across batches.

A batch's store call is most of its time on the store's side and none of it
on the worker's: while Redis applies batch k, the worker can validate and
plan batch k+1, and judge and publish batch k-1. The backtest does this with
stream.overlap, which owns its whole input; the live worker cannot, because
it must tell faust, batch by batch, what may be committed. So each batch
comes with a `done` callback: called with True once the batch is applied,
judged and its outputs queued (the caller acks it), with False when it was
given up (the caller leaves it uncommitted, to be redelivered).

Order is kept as batch by batch keeps it: a batch's store call starts only
once the batch before it is applied (a window read sees exactly the events
before it, as in the backtest), batches are judged, published and reported
done in submission order, and the delivered watermark (stream.delivery)
sees them open in that order. A batch whose store call or judgement fails
goes through the runner's full retry path (BatchRunner.retried: in place
while the store is down, split and dead-lettered when a record keeps
failing), and the batches after it wait for it in the store. Once a batch
is given up (the worker stopping) every later one is given up too, never
acked after a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from stream.codec import Incoming, SourceRecord
from stream.pipeline import Pipeline, Prepared
from stream.runner import BatchAbandoned, BatchRunner
from stream.store.base import EventObservations

__all__ = ["Done", "PipelinedRunner", "Track"]

log = logging.getLogger(__name__)

# Called once per submitted batch: True = applied and published, ack it;
# False = given up, leave it uncommitted.
Done = Callable[[bool], None]
# Around a batch's judging and publishing (stream.delivery.DeliveryTracker.batch).
Track = Callable[[Iterable[SourceRecord]], AbstractContextManager[None]]


@dataclass(slots=True)
class _Batch:
    items: Sequence[Incoming]
    done: Done
    started: float
    now_ms: int
    prepared: Prepared | None  # None: preparing failed; the retry path handles it
    applying: asyncio.Task[list[EventObservations]] | None
    # Set once the batch is in the store, by its own call or the retry path:
    # the next batch's store call waits for it.
    applied: asyncio.Event


def _untracked(records: Iterable[SourceRecord]) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


class PipelinedRunner:
    """Batches are handed on to be judged as soon as they are submitted (a
    judgement first waits for the batch's store call), so the last batch of
    a burst concludes without waiting for another; `submit` waits while
    `in_flight_max` batches are in flight (backpressure)."""

    def __init__(
        self,
        runner: BatchRunner,
        pipeline: Pipeline,
        track: Track = _untracked,
        in_flight_max: int = 3,
    ) -> None:
        self._runner = runner
        self._pipeline = pipeline
        self._track = track
        self._in_flight_max = in_flight_max
        self._last: _Batch | None = None
        self._concluding: list[asyncio.Task[None]] = []
        self._given_up = False

    def __len__(self) -> int:
        """Batches submitted and not yet reported done."""
        return len(self._concluding)

    async def submit(self, items: Sequence[Incoming], done: Done) -> None:
        """Start `items` in the store behind the batches before it; returns
        once it is on its way and fewer than `in_flight_max` are in flight."""
        if not items:
            done(True)
            return
        if self._given_up:
            done(False)
            raise BatchAbandoned
        started, now_ms = self._runner.begin(items), self._runner.now_ms()
        batch = _Batch(items, done, started, now_ms, None, None, asyncio.Event())
        previous, self._last = self._last, batch
        try:
            batch.prepared = self._pipeline.prepare(items, now_ms)
        except Exception:
            log.exception("preparing a batch of %d failed; retrying it alone", len(items))
        else:
            after = previous.applied if previous is not None else None
            batch.applying = asyncio.create_task(self._pipeline.observe(batch.prepared, after))
        chained = self._concluding[-1] if self._concluding else None
        task = asyncio.create_task(self._conclude(chained, batch))
        self._concluding.append(task)
        task.add_done_callback(self._concluding.remove)
        await asyncio.sleep(0)  # let the store call start before the caller goes on
        while len(self._concluding) >= self._in_flight_max:
            await asyncio.wait([self._concluding[0]])

    async def drain(self) -> None:
        """Wait until every submitted batch is reported done. Raises
        BatchAbandoned when one was given up."""
        while self._concluding:
            # Done tasks leave the list from their done callbacks: a turn of
            # the loop after they finish.
            await asyncio.gather(*self._concluding, return_exceptions=True)
            await asyncio.sleep(0)
        if self._given_up:
            raise BatchAbandoned

    def cancel(self) -> None:
        """The caller is going away (cancelled): give up what is in flight."""
        self._given_up = True
        for task in self._concluding:
            task.cancel()

    async def _conclude(self, previous: asyncio.Task[None] | None, batch: _Batch) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        if self._given_up:
            _cancel(batch)
            batch.done(False)
            return
        try:
            with self._track(i.record for i in batch.items):
                await self._judge(batch)
        except (asyncio.CancelledError, BatchAbandoned):
            self._given_up = True
            batch.done(False)
            return
        batch.done(True)

    async def _judge(self, batch: _Batch) -> None:
        """Judge and publish on what the store observed; on any failure, the
        runner's retry path for the whole batch (a redo is idempotent)."""
        runner = self._runner
        if batch.prepared is not None and batch.applying is not None:
            try:
                observations = await batch.applying
                batch.applied.set()
                result = await self._pipeline.conclude(batch.prepared, observations, batch.now_ms)
            except (asyncio.CancelledError, BatchAbandoned):
                raise
            except Exception as exc:
                # Redone below through the runner's retry path (backoff, isolation).
                log.warning("batch of %d failed (%s); retrying it", len(batch.items), exc)
            else:
                await runner.publish_until_done(batch.items[0].record.topic, result.outputs)
                runner.finish(batch.items, result, batch.started)
                return
        await runner.retried(batch.items, batch.started)
        batch.applied.set()


def _cancel(batch: _Batch) -> None:
    if batch.applying is not None and not batch.applying.done():
        batch.applying.cancel()
