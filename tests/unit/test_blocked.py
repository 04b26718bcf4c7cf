"""Stopped partitions (stream.blocked): the registry, and fetching partition by
partition so that one partition's unreadable batch costs no other records."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import pytest
from aiokafka.errors import (
    ConsumerStoppedError,
    CorruptRecordException,
    GroupAuthorizationFailedError,
    UnsupportedCodecError,
)

from stream.blocked import (
    BlockedPartition,
    BlockedPartitions,
    Change,
    PartitionFetcher,
    describe,
    unreadable,
)
from stream.metrics import Metrics


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True)
class Rec:
    offset: int


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Events:
    seen: list[tuple[Change, BlockedPartition, tuple[BlockedPartition, ...]]] = field(
        default_factory=list
    )

    def __call__(
        self, change: Change, entry: BlockedPartition, current: tuple[BlockedPartition, ...]
    ) -> None:
        self.seen.append((change, entry, current))

    def changes(self) -> list[Change]:
        return [c for c, _, _ in self.seen]


def registry(retry_s: float = 30.0) -> tuple[BlockedPartitions, Clock, Events]:
    clock, events = Clock(), Events()
    return (
        BlockedPartitions(retry_s, events, clock, wall_clock=lambda: 1_700_000_000.0),
        clock,
        events,
    )


def test_unreadable_means_this_partitions_records() -> None:
    assert unreadable(UnsupportedCodecError("Libraries for lz4 compression codec not found"))
    assert unreadable(CorruptRecordException("Invalid CRC"))
    assert unreadable(ValueError("lz4 frame: bad magic"))  # decompressors raise their own types
    assert unreadable(OSError("Not a gzipped file"))
    assert not unreadable(ConsumerStoppedError())
    assert not unreadable(GroupAuthorizationFailedError())
    assert not unreadable(asyncio.CancelledError())
    assert describe(UnsupportedCodecError("lz4")) == "UnsupportedCodecError: lz4"
    assert describe(ValueError("bad magic")) == "ValueError: bad magic"


def test_a_partition_stops_and_is_retried_only_when_due(caplog: pytest.LogCaptureFixture) -> None:
    blocked, clock, events = registry(retry_s=30)
    assert blocked.fetchable(("orders", 2))
    with caplog.at_level(logging.ERROR, logger="stream.blocked"):
        assert blocked.block("orders", 2, 17, "UnsupportedCodecError: lz4") is Change.BLOCKED
    assert [r.levelname for r in caplog.records] == ["ERROR"]
    assert "orders/2" in caplog.text and "offset 17" in caplog.text
    assert ("orders", 2) in blocked and blocked.partitions() == {("orders", 2)}
    assert not blocked.fetchable(("orders", 2)) and blocked.fetchable(("orders", 1))
    clock.now += 29.9
    assert not blocked.fetchable(("orders", 2))
    clock.now += 0.1
    assert blocked.fetchable(("orders", 2))
    assert blocked.fetchable(("orders", 2))  # stays due until the retry ends
    assert blocked.block("orders", 2, 17, "UnsupportedCodecError: lz4") is Change.STILL_BLOCKED
    assert not blocked.fetchable(("orders", 2))
    (entry,) = blocked.snapshot()
    assert entry.as_dict() == {
        "topic": "orders",
        "partition": 2,
        "offset": 17,
        "reason": "UnsupportedCodecError: lz4",
        "since": 1_700_000_000.0,
        "failures": 2,
    }
    assert events.changes() == [Change.BLOCKED, Change.STILL_BLOCKED]


def test_no_periodic_retry_when_disabled() -> None:
    blocked, clock, _ = registry(retry_s=0)
    blocked.block("orders", 0, 5, "x")
    clock.now += 10**9
    assert not blocked.fetchable(("orders", 0))


def test_resumes_only_past_the_offset_it_stopped_at() -> None:
    blocked, _, events = registry()
    blocked.block("orders", 1, 40, "x")
    blocked.delivered(("orders", 1), 39)  # records before the bad batch (after a seek back)
    assert ("orders", 1) in blocked
    blocked.delivered(("orders", 0), 100)  # another partition: nothing to do
    blocked.delivered(("orders", 1), 40)
    assert len(blocked) == 0 and blocked.fetchable(("orders", 1))
    assert events.changes() == [Change.BLOCKED, Change.RESUMED]
    assert events.seen[-1][2] == ()


def test_unknown_offset_resumes_on_any_record() -> None:
    blocked, _, _ = registry()
    blocked.block("orders", 1, None, "x")
    blocked.delivered(("orders", 1), 0)
    assert len(blocked) == 0


def test_rebalance_forgets_revoked_and_retries_kept_partitions_now() -> None:
    blocked, _, events = registry(retry_s=0)
    blocked.block("orders", 0, 1, "x")
    blocked.block("payouts", 3, 2, "y")
    blocked.reassigned([("payouts", 3), ("orders", 1)])
    assert blocked.partitions() == {("payouts", 3)}
    assert blocked.fetchable(("payouts", 3))  # faust moved it back to its committed offset
    assert events.seen[-1][0] is Change.FORGOTTEN and events.seen[-1][1].key == ("orders", 0)
    assert [e.key for e in events.seen[-1][2]] == [("payouts", 3)]


def test_metrics_follow_the_registry() -> None:
    metrics = Metrics()
    clock = Clock()
    blocked = BlockedPartitions(5.0, metrics.observe_blocked, clock)

    def sample(name: str, topic: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"topic": topic})

    blocked.block("orders", 0, 3, "x")
    blocked.block("orders", 1, 3, "x")
    clock.now += 5
    blocked.block("orders", 1, 3, "x")  # a failed retry is not a new stop
    assert sample("fraud_partitions_blocked", "orders") == 2
    assert sample("fraud_undecodable_batches_total", "orders") == 2
    blocked.delivered(("orders", 0), 3)
    assert sample("fraud_partitions_blocked", "orders") == 1
    blocked.reassigned([])
    assert sample("fraud_partitions_blocked", "orders") == 0
    assert sample("fraud_undecodable_batches_total", "orders") == 2


class FakeFetched:
    """Records fetched per partition, drained as aiokafka's fetcher drains
    them: partition after partition in the order asked, and an unreadable
    batch raises, losing the records taken from earlier partitions."""

    def __init__(self) -> None:
        self.records: dict[TP, list[Rec]] = {}
        self.errors: dict[TP, BaseException] = {}
        self.positions: dict[TP, int] = {}
        self.arrived = asyncio.Event()
        self.calls: list[tuple[TP, ...]] = []

    def add(self, tp: TP, *offsets: int) -> None:
        self.records.setdefault(tp, []).extend(Rec(o) for o in offsets)
        self.positions.setdefault(tp, offsets[0])
        self.arrived.set()

    def fail(self, tp: TP, exc: BaseException, position: int) -> None:
        self.errors[tp] = exc
        self.positions[tp] = position
        self.arrived.set()

    async def drain(
        self, tps: Sequence[TP], timeout: float, max_records: int | None
    ) -> dict[TP, list[Rec]]:
        self.calls.append(tuple(tps))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if out := self._take(tps, max_records):
                return out
            left = deadline - loop.time()
            if left <= 0:
                return {}
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), left)
            except TimeoutError:
                return {}

    def _take(self, tps: Sequence[TP], max_records: int | None) -> dict[TP, list[Rec]]:
        out: dict[TP, list[Rec]] = {}
        for tp in tps:
            if tp in self.errors:
                raise self.errors[tp]  # what `out` took is lost, as in aiokafka
            if self.records.get(tp):
                n = len(self.records[tp]) if max_records is None else max_records
                out[tp], self.records[tp] = self.records[tp][:n], self.records[tp][n:]
                self.positions[tp] = out[tp][-1].offset + 1
                if max_records is not None:
                    max_records -= len(out[tp])
                    if max_records == 0:
                        return out
        return out

    async def position(self, tp: TP) -> int | None:
        return self.positions.get(tp)


ORDERS = [TP("orders", p) for p in range(4)]


def offsets(got: dict[Any, Sequence[Any]]) -> dict[Any, list[int]]:
    return {tp: [r.offset for r in records] for tp, records in got.items()}


async def test_one_partitions_bad_batch_costs_no_other_records() -> None:
    blocked, _, _ = registry()
    fetched, fetcher = FakeFetched(), PartitionFetcher(blocked)
    fetched.add(ORDERS[0], 10, 11)
    fetched.fail(ORDERS[1], UnsupportedCodecError("lz4"), position=7)
    fetched.add(ORDERS[2], 20)
    fetched.add(ORDERS[3], 30, 31, 32)
    got = await fetcher.fetch(ORDERS, fetched.drain, fetched.position, 1.0, None)
    assert offsets(got) == {ORDERS[0]: [10, 11], ORDERS[2]: [20], ORDERS[3]: [30, 31, 32]}
    (entry,) = blocked.snapshot()
    assert (entry.topic, entry.partition, entry.offset) == ("orders", 1, 7)
    assert entry.reason == "UnsupportedCodecError: lz4"
    fetched.calls.clear()
    fetched.add(ORDERS[0], 12)
    got = await fetcher.fetch(ORDERS, fetched.drain, fetched.position, 1.0, None)
    assert offsets(got) == {ORDERS[0]: [12]}
    assert not any(ORDERS[1] in call for call in fetched.calls)  # not fetched while stopped


async def test_a_failure_while_waiting_takes_nothing_and_is_found_next() -> None:
    blocked, _, _ = registry()
    fetched, fetcher = FakeFetched(), PartitionFetcher(blocked)

    async def later() -> None:
        await asyncio.sleep(0.05)
        fetched.records[ORDERS[2]] = [Rec(5), Rec(6)]
        fetched.errors[ORDERS[1]] = CorruptRecordException("Invalid CRC")
        fetched.positions[ORDERS[1]] = 9
        fetched.arrived.set()

    task = asyncio.ensure_future(later())
    # The wait covers all partitions; the failure comes first and takes nothing.
    assert await fetcher.fetch(ORDERS, fetched.drain, fetched.position, 5.0, None) == {}
    await task
    assert len(blocked) == 0 and len(fetched.records[ORDERS[2]]) == 2
    got = await fetcher.fetch(ORDERS, fetched.drain, fetched.position, 5.0, None)
    assert offsets(got) == {ORDERS[2]: [5, 6]}
    assert [(e.partition, e.offset) for e in blocked.snapshot()] == [(1, 9)]


async def test_after_an_unnamed_failure_partitions_wait_on_their_own() -> None:
    blocked, _, _ = registry()
    fetched, fetcher = FakeFetched(), PartitionFetcher(blocked)
    fetched.fail(ORDERS[0], UnsupportedCodecError("zstd"), position=3)
    assert await fetcher.fetch(ORDERS, fetched.drain, fetched.position, 1.0, None) == {}
    del fetched.errors[ORDERS[0]]  # aiokafka drops the failed batch and fetches it again

    async def later() -> None:
        await asyncio.sleep(0.05)
        fetched.records[ORDERS[3]] = [Rec(40)]
        fetched.errors[ORDERS[0]] = UnsupportedCodecError("zstd")
        fetched.arrived.set()

    task = asyncio.ensure_future(later())
    got = await fetcher.fetch(ORDERS, fetched.drain, fetched.position, 5.0, None)
    await task
    assert offsets(got) == {ORDERS[3]: [40]}
    assert [(e.partition, e.offset) for e in blocked.snapshot()] == [(0, 3)]
    assert all(len(call) == 1 for call in fetched.calls[1:])  # one partition per drain


async def test_records_arriving_while_waiting_are_all_taken() -> None:
    blocked, _, _ = registry()
    fetched, fetcher = FakeFetched(), PartitionFetcher(blocked)

    async def later() -> None:
        await asyncio.sleep(0.05)
        fetched.add(ORDERS[1], 1, 2, 3)
        fetched.add(ORDERS[2], 7)

    task = asyncio.ensure_future(later())
    got = await fetcher.fetch(ORDERS, fetched.drain, fetched.position, 5.0, None)
    await task
    assert offsets(got) == {ORDERS[1]: [1, 2, 3], ORDERS[2]: [7]}
    assert len(fetched.calls[0]) == 4  # one wait for all partitions


async def test_other_errors_keep_fausts_handling() -> None:
    blocked, _, _ = registry()
    fetched, fetcher = FakeFetched(), PartitionFetcher(blocked)
    fetched.fail(ORDERS[0], GroupAuthorizationFailedError(), position=0)
    with pytest.raises(GroupAuthorizationFailedError):
        await fetcher.fetch(ORDERS[:1], fetched.drain, fetched.position, 0.0, None)
    assert len(blocked) == 0


async def test_a_due_retry_fetches_the_partition_and_resumes_it() -> None:
    blocked, clock, events = registry(retry_s=30)
    fetched, fetcher = FakeFetched(), PartitionFetcher(blocked)
    fetched.fail(ORDERS[1], UnsupportedCodecError("lz4"), position=7)
    fetched.add(ORDERS[0], 1)
    await fetcher.fetch(ORDERS[:2], fetched.drain, fetched.position, 0.0, None)
    assert blocked.partitions() == {("orders", 1)}
    del fetched.errors[ORDERS[1]]  # the cause was removed
    fetched.add(ORDERS[1], 7, 8)
    assert await fetcher.fetch(ORDERS[:2], fetched.drain, fetched.position, 0.0, None) == {}
    clock.now += 30
    got = await fetcher.fetch(ORDERS[:2], fetched.drain, fetched.position, 0.0, None)
    assert offsets(got) == {ORDERS[1]: [7, 8]}
    assert len(blocked) == 0 and events.changes() == [Change.BLOCKED, Change.RESUMED]


async def test_max_records_is_shared_and_no_partition_is_always_last() -> None:
    blocked, _, _ = registry()
    fetched, fetcher = FakeFetched(), PartitionFetcher(blocked)
    for i, tp in enumerate(ORDERS):
        fetched.add(tp, *range(100 * i, 100 * i + 100))
    seen = set()
    for _ in range(4):
        got = await fetcher.fetch(ORDERS, fetched.drain, fetched.position, 0.0, 60)
        assert sum(len(rs) for rs in got.values()) == 60
        seen |= set(got)
    assert seen == set(ORDERS)


async def test_all_partitions_stopped_waits_instead_of_spinning() -> None:
    blocked, _, _ = registry()
    blocked.block("orders", 0, 0, "x")
    fetched, fetcher = FakeFetched(), PartitionFetcher(blocked)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await fetcher.fetch(ORDERS[:1], fetched.drain, fetched.position, 0.2, None) == {}
    assert loop.time() - start >= 0.19 and fetched.calls == []
