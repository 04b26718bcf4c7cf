"""Overlapping the store's work with Python's across batches, for callers
that own the whole input and want throughput (the backtest, the bench's
direct run). The live worker, which must tell faust batch by batch what may
be committed, overlaps through stream.pipelined instead."""

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
# A batch in the store: its preparation, `now`, record count and the store call.
_Applying = tuple[Prepared, int, int, "asyncio.Task[list[EventObservations]]"]


class OverlappedBatches:
    """Keeps the store busy (the backtest, and the bench's direct run). Batch
    k+1 is prepared (validated, planned) and handed to the store, which
    builds its call, while the store applies batch k; and k is judged,
    settled and handed on while the store applies k+1. Store calls keep
    input order: the store applies k+1's aggregates only after k's (see
    EventStore.apply), and k+1 claims incidents only after k did (the two
    scripts touch disjoint keys, so k's claims queued behind k+1's
    aggregates change nothing). Results are handed on in batch order."""

    def __init__(self, pipeline: Pipeline, on_result: OnResult) -> None:
        self._pipeline = pipeline
        self._on_result = on_result
        self._applying: _Applying | None = None
        self._concluding: asyncio.Task[None] | None = None

    async def submit(self, batch: Sequence[Incoming]) -> None:
        now_ms = int(time.time() * 1000)
        prepared = self._pipeline.prepare(batch, now_ms)
        in_store = self._applying
        task = asyncio.create_task(self._pipeline.observe(prepared))
        self._applying = (prepared, now_ms, len(batch), task)
        applied = await _finished(in_store)  # meanwhile the store builds this batch's call
        if applied is not None:
            # Created after the store call, so it runs (judging) after the send.
            previous = self._concluding
            self._concluding = asyncio.create_task(self._conclude(previous, *applied))
        await asyncio.sleep(0)  # let both start before the caller prepares the next batch

    async def _applied(self) -> tuple[Prepared, int, int, list[EventObservations]] | None:
        applying, self._applying = self._applying, None
        return await _finished(applying)

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


async def _finished(
    applying: _Applying | None,
) -> tuple[Prepared, int, int, list[EventObservations]] | None:
    """A batch in the store, once the store has answered."""
    if applying is None:
        return None
    prepared, now_ms, records, task = applying
    return prepared, now_ms, records, await task
