"""Overlapping the store's work with Python's across batches, for callers
that own the whole input and want throughput (the backtest, the bench's
direct run). The live worker does not overlap: it acks a batch only once
its outputs are queued, one batch at a time per agent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from stream.codec import Incoming
from stream.pipeline import BatchResult, Pipeline, Prepared
from stream.store.base import EventObservations

__all__ = ["OnResult", "OverlappedBatches"]

# What to do with a concluded batch: its result and how many records it had.
OnResult = Callable[[BatchResult, int], Awaitable[None]]


class OverlappedBatches:
    """Keeps the store busy (the backtest, and the bench's direct run). Batch
    k+1 is prepared (validated, planned) while the store applies batch k;
    it goes to the store (which builds its call then) as soon as k's reply
    is in, and k is judged, settled and handed on while the store applies
    k+1. Store calls keep input order: the aggregates of k+1 are sent only
    after those of k came back, and k+1 claims incidents only after k did
    (the two scripts touch disjoint keys, so k's claims queued behind k+1's
    aggregates change nothing). Results are handed on in batch order."""

    def __init__(self, pipeline: Pipeline, on_result: OnResult) -> None:
        self._pipeline = pipeline
        self._on_result = on_result
        self._applying: tuple[Prepared, int, int, asyncio.Task[list[EventObservations]]] | None = (
            None
        )
        self._concluding: asyncio.Task[None] | None = None

    async def submit(self, batch: Sequence[Incoming]) -> None:
        now_ms = int(time.time() * 1000)
        prepared = self._pipeline.prepare(batch, now_ms)
        applied = await self._applied()
        task = asyncio.create_task(self._pipeline.observe(prepared))
        self._applying = (prepared, now_ms, len(batch), task)
        if applied is not None:
            # Created after the store call, so it runs (judging) after the send.
            previous = self._concluding
            self._concluding = asyncio.create_task(self._conclude(previous, *applied))
        await asyncio.sleep(0)  # let both start before the caller prepares the next batch

    async def _applied(self) -> tuple[Prepared, int, int, list[EventObservations]] | None:
        if self._applying is None:
            return None
        prepared, now_ms, records, task = self._applying
        self._applying = None
        return prepared, now_ms, records, await task

    async def _conclude(
        self,
        previous: asyncio.Task[None] | None,
        prepared: Prepared,
        now_ms: int,
        records: int,
        observations: list[EventObservations],
    ) -> None:
        if previous is not None:
            await previous
        result = await self._pipeline.conclude(prepared, observations, now_ms)
        await self._on_result(result, records)

    async def drain(self) -> None:
        """Wait until every submitted batch is concluded and handed on."""
        applied = await self._applied()
        if applied is not None:
            self._concluding = asyncio.create_task(self._conclude(self._concluding, *applied))
        if self._concluding is not None:
            task, self._concluding = self._concluding, None
            await task

    def cancel(self) -> None:
        """After a failure: stop whatever is still in flight."""
        for task in (self._applying[3] if self._applying else None, self._concluding):
            if task is not None:
                task.cancel()
