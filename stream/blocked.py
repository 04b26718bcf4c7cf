"""Input partitions stopped at a record batch the worker cannot read.

aiokafka decompresses a fetched batch only when its records are handed out,
so a batch it cannot decode (a codec library missing, a corrupt batch)
raises from the consumer's fetch call. Left alone, that error stops faust's
fetcher, the worker exits, and after a restart it meets the same uncommitted
batch again, forever. Skipping the batch would lose its records.

Instead the partition is stopped where it is: nothing of it past that offset
is delivered or committed, the other partitions go on, and the stop is
visible (`/readyz`, metrics, an ERROR log line) until an operator removes the
cause. `PartitionFetcher` drains each partition on its own, so one
partition's failure never takes records of another with it; `BlockedPartitions`
remembers the stopped ones and when to try them again. Both are free of faust:
`stream.kafka_transport` plugs them into faust's consumer thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiokafka.errors import (
    ConsumerStoppedError,
    CorruptRecordException,
    IllegalOperation,
    KafkaError,
    RecordTooLargeError,
    UnsupportedCodecError,
)

__all__ = [
    "REASON_MAX_CHARS",
    "SUSPECT_S",
    "BlockedPartition",
    "BlockedPartitions",
    "Change",
    "Drain",
    "Key",
    "Listener",
    "PartitionFetcher",
    "Position",
    "describe",
    "unreadable",
]

log = logging.getLogger(__name__)
REASON_MAX_CHARS = 300
Key = tuple[str, int]


def unreadable(exc: BaseException) -> bool:
    """Whether a failure to drain one partition concerns that partition's
    records. Codec, corruption and size errors do, and so does any error that
    is not a KafkaError (decompressors and the record parser raise their own
    types). aiokafka's other errors come from the group, the connection or a
    stopping consumer, are the same for every partition and keep faust's own
    handling."""
    if isinstance(exc, UnsupportedCodecError | CorruptRecordException | RecordTooLargeError):
        return True
    client = KafkaError | ConsumerStoppedError | IllegalOperation
    return isinstance(exc, Exception) and not isinstance(exc, client)


def describe(exc: BaseException) -> str:
    """`Type: message` (aiokafka's errors already start with their type)."""
    text = str(exc)
    name = type(exc).__name__
    return (text if text.startswith(name) else f"{name}: {text}")[:REASON_MAX_CHARS]


@dataclass(frozen=True, slots=True)
class BlockedPartition:
    topic: str
    partition: int
    offset: int | None  # first offset not delivered; None: the position was unknown
    reason: str
    since: float  # wall-clock time of the first failure
    failures: int  # the first failure and every failed retry

    @property
    def key(self) -> Key:
        return (self.topic, self.partition)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "reason": self.reason,
            "since": self.since,
            "failures": self.failures,
        }


class Change(StrEnum):
    BLOCKED = "blocked"  # a partition stopped
    STILL_BLOCKED = "still_blocked"  # a retry failed again
    RESUMED = "resumed"  # a retry read past the offset it had stopped at
    FORGOTTEN = "forgotten"  # the partition was revoked


Listener = Callable[[Change, BlockedPartition, tuple[BlockedPartition, ...]], None]


class BlockedPartitions:
    """The stopped partitions of one worker, shared by faust's consumer thread
    (which changes it) and the web and metrics code (which read it): a lock
    guards every access and readers get immutable snapshots.

    A stopped partition is fetched again `retry_s` after each failure (0: only
    after a rebalance or a restart), and right after every rebalance that
    leaves it here: faust has then moved it back to its committed offset, and
    the records up to the bad batch are due again."""

    def __init__(
        self,
        retry_s: float,
        listener: Listener | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.retry_s = retry_s
        self._listener = listener
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._entries: dict[Key, BlockedPartition] = {}
        self._retry_at: dict[Key, float] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> tuple[BlockedPartition, ...]:
        with self._lock:
            return self._snapshot()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def partitions(self) -> set[Key]:
        with self._lock:
            return set(self._entries)

    def fetchable(self, key: Key) -> bool:
        """Not stopped, or due for a retry (until the retry ends either way)."""
        if not self._entries:  # the common case, without the lock
            return True
        with self._lock:
            if key not in self._entries:
                return True
            return self._clock() >= self._retry_at[key]

    def block(self, topic: str, partition: int, offset: int | None, reason: str) -> Change:
        key = (topic, partition)
        with self._lock:
            old = self._entries.get(key)
            if old is None:
                entry = BlockedPartition(topic, partition, offset, reason, self._wall_clock(), 1)
                change = Change.BLOCKED
            else:
                entry = BlockedPartition(
                    topic, partition, offset, reason, old.since, old.failures + 1
                )
                change = Change.STILL_BLOCKED
            self._entries[key] = entry
            self._retry_at[key] = self._clock() + self.retry_s if self.retry_s else float("inf")
            current = self._snapshot()
        if change is Change.BLOCKED:
            log.error(
                "partition %s/%d stopped at offset %s: cannot read its next record batch "
                "(%s). Nothing past it is processed or committed; the other partitions go "
                "on. Fix the cause and restart the worker (runbook: FraudPartitionBlocked).",
                topic,
                partition,
                offset,
                reason,
            )
        else:
            log.warning(
                "partition %s/%d still cannot be read at offset %s (%s)",
                topic,
                partition,
                offset,
                reason,
            )
        self._notify(change, entry, current)
        return change

    def delivered(self, key: Key, last_offset: int) -> None:
        """Records up to `last_offset` were read: a stopped partition resumes
        once they include the offset it stopped at."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or (entry.offset is not None and last_offset < entry.offset):
                return
            del self._entries[key], self._retry_at[key]
            current = self._snapshot()
        log.warning("partition %s/%d reads again from offset %s", *key, entry.offset)
        self._notify(Change.RESUMED, entry, current)

    def reassigned(self, assigned: Iterable[Key]) -> None:
        """After a rebalance: forget partitions no longer ours, retry the others now."""
        keep = set(assigned)
        with self._lock:
            gone = [e for k, e in self._entries.items() if k not in keep]
            for entry in gone:
                del self._entries[entry.key], self._retry_at[entry.key]
            for key in self._retry_at:
                self._retry_at[key] = self._clock()
            current = self._snapshot()
        for entry in gone:
            log.warning("stopped partition %s/%d was revoked", entry.topic, entry.partition)
            self._notify(Change.FORGOTTEN, entry, current)

    def _snapshot(self) -> tuple[BlockedPartition, ...]:
        return tuple(sorted(self._entries.values(), key=lambda e: e.key))

    def _notify(
        self, change: Change, entry: BlockedPartition, current: tuple[BlockedPartition, ...]
    ) -> None:
        if self._listener is not None:
            self._listener(change, entry, current)


Drain = Callable[[Sequence[Any], float, int | None], Awaitable[Mapping[Any, Sequence[Any]]]]
"""(partitions, timeout in seconds, max records) → fetched records by partition."""
Position = Callable[[Any], Awaitable[int | None]]
SUSPECT_S = 60.0


class PartitionFetcher:
    """One fetch for faust, without letting one partition's failure cost
    another partition's records.

    aiokafka's multi-partition drain advances each partition's position as it
    goes; when a later partition raises, the records already taken from the
    earlier ones are dropped with the exception, and faust (seeing a gap in
    offsets) would commit past them. So records are drained partition by
    partition; only the wait for new data covers all partitions at once, and
    it takes a single record: a failure there has taken nothing yet. Which
    partition failed is unknown then, so for a while every partition waits
    on its own, and the next failure names it. Records of the same fetch
    response before an unreadable batch stay with it (aiokafka drops them
    with the error): they are redelivered once the partition reads again.
    """

    def __init__(
        self, blocked: BlockedPartitions, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.blocked = blocked
        self._clock = clock
        self._turn = 0
        self._suspect_until = 0.0

    async def fetch(
        self,
        partitions: Iterable[Any],
        drain: Drain,
        position: Position,
        timeout: float,
        max_records: int | None,
    ) -> dict[Any, Sequence[Any]]:
        """What is fetched now, else what arrives within `timeout`."""
        tps = [tp for tp in partitions if self.blocked.fetchable((tp.topic, tp.partition))]
        if not tps:
            await asyncio.sleep(timeout)  # faust calls again at once: do not spin
            return {}
        if self._clock() < self._suspect_until:
            found = await self._sweep(tps, drain, position, max_records)
            if found or not timeout:
                return found
            return await self._first(tps, drain, position, timeout, max_records)
        try:
            first = await drain(tps, timeout, 1)
        except Exception as exc:
            if not unreadable(exc):
                raise
            self._suspect_until = self._clock() + SUSPECT_S
            return {}
        if not first:
            return {}
        (tp, records), *_ = first.items()
        found = {tp: self._read(tp, records)}
        left = None if max_records is None else max_records - 1
        for tp, more in (await self._sweep(tps, drain, position, left)).items():
            found[tp] = [*found.get(tp, ()), *more]
        return found

    async def _sweep(
        self, tps: list[Any], drain: Drain, position: Position, max_records: int | None
    ) -> dict[Any, Sequence[Any]]:
        self._turn = (self._turn + 1) % len(tps)  # no partition always last under max_records
        found: dict[Any, Sequence[Any]] = {}
        for tp in tps[self._turn :] + tps[: self._turn]:
            if max_records is not None and max_records <= 0:
                break
            try:
                records = (await drain([tp], 0, max_records)).get(tp)
            except Exception as exc:
                await self._failed(tp, exc, position)
                continue
            if records:
                found[tp] = self._read(tp, records)
                if max_records is not None:
                    max_records -= len(records)
        return found

    async def _first(
        self,
        tps: list[Any],
        drain: Drain,
        position: Position,
        timeout: float,
        max_records: int | None,
    ) -> dict[Any, Sequence[Any]]:
        """Wait on every partition on its own; keep all that arrived together.
        A cancelled drain has taken nothing: it is cancelled while waiting."""
        tasks = {asyncio.ensure_future(drain([tp], timeout, max_records)): tp for tp in tps}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        found: dict[Any, Sequence[Any]] = {}
        for task, tp in tasks.items():
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                await self._failed(tp, exc, position)
            elif records := task.result().get(tp):
                found[tp] = self._read(tp, records)
        return found

    def _read(self, tp: Any, records: Sequence[Any]) -> Sequence[Any]:
        if len(self.blocked):
            self.blocked.delivered((tp.topic, tp.partition), records[-1].offset)
        return records

    async def _failed(self, tp: Any, exc: BaseException, position: Position) -> None:
        if not unreadable(exc):
            raise exc
        self._suspect_until = 0.0  # found it
        self.blocked.block(tp.topic, tp.partition, await position(tp), describe(exc))
