"""The delivered watermark: how far each input partition's decisions are known
to be in Kafka, so that a redelivered record is not judged a second time.

After a crash Kafka redelivers every record since the last commit. The store
reports those already applied as duplicates (a record that only reads, such
as a payout checked against earnings, is not even recognised: it feeds no
count to guard), and the pipeline judged them all again, because for some
that is the only chance to publish a decision: the worker may have died
between applying a record and settling its incident, or before the producer
delivered its outputs. But a window's read covers its whole end bucket, so
a record judged again sees the events applied after it in that bucket, and
may make a decision the first judgement did not (or miss one it did): the
live decisions would then differ from the backtest's, which never judges a
record twice.

So the worker records, per input partition, the highest offset up to which
every record's outputs were delivered (the producer's send futures
resolved), and a redelivered record at or below it is applied (a no-op for
a duplicate) but not judged again: its decisions are in Kafka already. A
record above it is judged as before; that is the one case left where live
may differ from the backtest (docs/GUARANTEES.md). The watermark is not the
commit: faust commits on its own schedule, and the watermark may be ahead of
it or behind it.

Why every earlier batch must be delivered first: outputs of different
batches go to different output partitions and may be delivered out of
order, and a watermark at offset n claims every record up to n. A batch
abandoned mid-way (the worker stopping) or whose delivery failed fences its
partitions: their watermarks stay where they are for the rest of the
process, since records after it may have outputs and records within it not.

The backtest and replay never redeliver (each reads its input once, in
order), so they neither write nor read watermarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from detectors.events import SourcePosition
from stream.codec import Decoded, SourceRecord

__all__ = ["DeliveryTracker", "ReadWatermarks", "SettledRecords", "WriteWatermarks", "unsettled"]

log = logging.getLogger(__name__)

Part = tuple[str, int]  # (Kafka topic name, partition)
WriteWatermarks = Callable[[Mapping[Part, int]], Awaitable[None]]
ReadWatermarks = Callable[[Sequence[Part]], Awaitable[dict[Part, int]]]


@dataclass(slots=True, eq=False)
class _Batch:
    offsets: dict[Part, int]  # its highest offset per input partition it tracks
    pending: int = 0  # sends not yet resolved
    closed: bool = False  # every send made
    failed: bool = False  # abandoned, or a send failed: never delivered

    @property
    def delivered(self) -> bool:
        return self.closed and not self.pending and not self.failed


# The batch whose outputs the current task is publishing.
_CURRENT: ContextVar[_Batch | None] = ContextVar("delivery_batch", default=None)


@dataclass(slots=True)
class DeliveryTracker:
    """Follows the live worker's batches to their delivery and writes the
    watermarks, off the batch loop: one small store call per delivered batch
    at most, fewer when deliveries come faster than the store answers."""

    write: WriteWatermarks
    retry_s: float = 1.0
    _queues: dict[Part, deque[_Batch]] = field(default_factory=dict)
    _fenced: set[Part] = field(default_factory=set)
    _due: dict[Part, int] = field(default_factory=dict)  # advanced, not yet written
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.contextmanager
    def batch(self, records: Iterable[SourceRecord]) -> Iterator[None]:
        """Around the processing of one batch of records: sends made inside
        count toward its delivery. Batches must be opened in the order their
        records are processed; within a batch, a partition's records come in
        offset order (were one out of order, its last offset would only
        claim less)."""
        highest: dict[Part, int] = {}
        for r in records:
            highest[(r.topic, r.partition)] = r.offset
        for part in self._fenced & highest.keys():
            del highest[part]
        current = _Batch(highest)
        for part in highest:
            self._queues.setdefault(part, deque()).append(current)
        token = _CURRENT.set(current)
        try:
            yield
        except BaseException:
            self._fail(current, "abandoned")
            raise
        finally:
            _CURRENT.reset(token)
        current.closed = True
        self._advance(current)

    def sent(self, delivery: Awaitable[Any]) -> None:
        """A send of the current batch; `delivery` resolves once Kafka has it."""
        current = _CURRENT.get()
        if current is None:
            return
        if not isinstance(delivery, asyncio.Future):
            self._fail(current, "sent without a delivery future")
            return
        current.pending += 1
        delivery.add_done_callback(partial(self._resolved, current))

    def _resolved(self, batch: _Batch, delivery: asyncio.Future[Any]) -> None:
        if delivery.cancelled() or delivery.exception() is not None:
            self._fail(batch, "not delivered")
            return
        batch.pending -= 1
        self._advance(batch)

    def _fail(self, batch: _Batch, why: str) -> None:
        if batch.failed:
            return
        batch.failed = True
        if batch.offsets:
            log.warning(
                "a batch was %s: delivered watermarks of %s stop here until restart",
                why,
                ", ".join(f"{t}/{p}" for t, p in sorted(batch.offsets)),
            )
        self._fenced.update(batch.offsets)

    def _advance(self, batch: _Batch) -> None:
        """Move each partition of `batch` past its leading delivered batches."""
        moved = False
        for part in batch.offsets:
            queue = self._queues.get(part)
            if queue is None:
                continue
            while queue and queue[0].delivered:
                self._due[part] = max(self._due.get(part, -1), queue.popleft().offsets[part])
                moved = True
            if not queue:
                del self._queues[part]
        if moved:
            self._wake.set()

    async def run(self) -> None:
        """Write what became due; a failed write is kept and retried later."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            due, self._due = self._due, {}
            try:
                await self.write(due)
            except Exception as exc:
                log.warning("delivered watermarks not written (%s); retrying", exc)
                for part, offset in due.items():
                    self._due[part] = max(self._due.get(part, offset), offset)
                self._wake.set()
                await asyncio.sleep(self.retry_s)

    def due(self) -> dict[Part, int]:
        """Advanced but not yet written."""
        return dict(self._due)


class SettledRecords:
    """Which records of a batch are settled: at or below their partition's
    delivered watermark, so their decisions are in Kafka already.

    A record can only be settled when it is redelivered, and records are
    redelivered only where a partition's consumption (re)starts, from its
    committed offset: so each partition's watermark is read once, when its
    first batch arrives after an assignment, and followed only while the
    partition's records are still at or below it. The usual batch pays no
    round trip, only a set of its partitions. A watermark read too low
    (another worker still delivering) only means judging again, as before."""

    def __init__(self, read: ReadWatermarks) -> None:
        self._read = read
        self._known: set[Part] = set()  # read since the last rebalance
        self._ahead: dict[Part, int] = {}  # of those, whose records are still at or below it

    def forget(self) -> None:
        """Partitions were revoked or assigned: each restarts from its commit."""
        self._known.clear()
        self._ahead.clear()

    async def on_rebalance(self, sender: Any, /, *args: Any, signal: Any, **kw: Any) -> None:
        """A faust `on_partitions_revoked` receiver."""
        self.forget()

    async def settled(self, decoded: Sequence[Decoded]) -> frozenset[SourcePosition]:
        parts = {(d.record.topic, d.record.partition) for d in decoded}
        unknown = parts - self._known
        if unknown:
            self._ahead.update(await self._read(sorted(unknown)))
            self._known |= unknown
        if not self._ahead.keys() & parts:
            return frozenset()
        out = set()
        lowest: dict[Part, int] = {}
        for d in decoded:
            r = d.record
            part = (r.topic, r.partition)
            lowest[part] = min(lowest.get(part, r.offset), r.offset)
            if r.offset <= self._ahead.get(part, -1):
                out.add(r.position)
        for part, offset in lowest.items():
            # A batch wholly past the watermark: so is every later one (a
            # batch retried in place is the same batch, so one that straddles
            # the watermark keeps it).
            if offset > self._ahead.get(part, offset):
                del self._ahead[part]
        return frozenset(out)


def unsettled(admitted: list[Decoded], settled: frozenset[SourcePosition]) -> list[Decoded]:
    """`admitted` without the settled records."""
    if not settled:
        return admitted
    return [d for d in admitted if d.record.position not in settled]
