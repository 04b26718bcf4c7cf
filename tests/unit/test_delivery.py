"""The delivered watermark's bookkeeping (stream.delivery): a partition's
watermark advances only in batch order, once every send of a batch and of
every earlier batch is delivered; a lost batch fences its partitions. And
its reading: once per partition and assignment, records at or below it
settled, a batch retried in place settled alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from detectors.events import SourcePosition
from stream.codec import Decoded, SourceRecord
from stream.delivery import DeliveryTracker, SettledRecords
from tests.unit.catalogue_events import T0, order

Part = tuple[str, int]


def records(topic: str, partition: int, first: int, last: int) -> list[SourceRecord]:
    return [SourceRecord(topic, partition, o, None, b"{}", T0) for o in range(first, last + 1)]


class Sink:
    """The store's side: what was written, call by call."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[dict[Part, int]] = []
        self.failures = failures

    async def write(self, offsets: Mapping[Part, int]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("redis down")
        self.calls.append(dict(offsets))


def sends(tracker: DeliveryTracker, n: int) -> list[asyncio.Future[Any]]:
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(n)]
    for f in futures:
        tracker.sent(f)
    return futures


async def settle() -> None:
    """Let done-callbacks run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_out_of_order_deliveries_advance_only_in_batch_order() -> None:
    tracker = DeliveryTracker(Sink().write)
    with tracker.batch(records("orders", 0, 0, 4)):
        first = sends(tracker, 2)
    with tracker.batch(records("orders", 0, 5, 9) + records("refunds", 0, 0, 1)):
        second = sends(tracker, 1)
    second[0].set_result(None)
    await settle()
    # refunds/0 had nothing earlier; orders/0 waits for the first batch.
    assert tracker.due() == {("refunds", 0): 1}
    first[1].set_result(None)
    await settle()
    assert tracker.due() == {("refunds", 0): 1}
    first[0].set_result(None)
    await settle()
    assert tracker.due() == {("refunds", 0): 1, ("orders", 0): 9}


async def test_a_batch_without_outputs_is_delivered_at_once_after_earlier_ones() -> None:
    tracker = DeliveryTracker(Sink().write)
    with tracker.batch(records("orders", 0, 0, 4)):
        pass
    assert tracker.due() == {("orders", 0): 4}
    with tracker.batch(records("orders", 0, 5, 6)):
        pending = sends(tracker, 1)
    with tracker.batch(records("orders", 0, 7, 8)):
        pass
    assert tracker.due() == {("orders", 0): 4}
    pending[0].set_result(None)
    await settle()
    assert tracker.due() == {("orders", 0): 8}


async def test_a_send_delivered_before_its_batch_closes_waits_for_the_close() -> None:
    tracker = DeliveryTracker(Sink().write)
    with tracker.batch(records("orders", 0, 0, 1)):
        (done,) = sends(tracker, 1)
        done.set_result(None)
        await settle()
        assert tracker.due() == {}  # more sends of this batch may follow
    assert tracker.due() == {("orders", 0): 1}


async def test_a_failed_send_fences_its_partitions_only() -> None:
    tracker = DeliveryTracker(Sink().write)
    with tracker.batch(records("orders", 0, 0, 1) + records("refunds", 0, 0, 0)):
        (lost,) = sends(tracker, 1)
    lost.set_exception(RuntimeError("message too large"))
    await settle()
    with tracker.batch(records("orders", 0, 2, 3) + records("payouts", 0, 0, 5)):
        pass
    with tracker.batch(records("orders", 0, 4, 4)):
        sends(tracker, 1)[0].set_result(None)
    await settle()
    assert tracker.due() == {("payouts", 0): 5}


async def test_an_abandoned_batch_fences_its_partitions_after_earlier_ones() -> None:
    tracker = DeliveryTracker(Sink().write)
    with tracker.batch(records("orders", 0, 0, 1)):
        earlier = sends(tracker, 1)
    with pytest.raises(asyncio.CancelledError), tracker.batch(records("orders", 0, 2, 3)):
        sends(tracker, 1)
        raise asyncio.CancelledError
    with tracker.batch(records("orders", 0, 4, 5)):
        pass
    earlier[0].set_result(None)
    await settle()
    assert tracker.due() == {("orders", 0): 1}


async def test_a_send_without_a_batch_or_future_is_not_counted_as_delivered() -> None:
    tracker = DeliveryTracker(Sink().write)
    tracker.sent(asyncio.get_running_loop().create_future())  # outside a batch: ignored
    with tracker.batch(records("orders", 0, 0, 0)):
        tracker.sent(object())  # type: ignore[arg-type]  # no way to know it arrived
    assert tracker.due() == {}


async def test_writes_are_coalesced_and_retried_until_the_store_answers() -> None:
    sink = Sink(failures=1)
    tracker = DeliveryTracker(sink.write, retry_s=0.01)
    writer = asyncio.create_task(tracker.run())
    try:
        with tracker.batch(records("orders", 0, 0, 4)):
            pass
        with tracker.batch(records("orders", 0, 5, 9) + records("orders", 1, 0, 0)):
            pass
        for _ in range(200):
            if sink.calls:
                break
            await asyncio.sleep(0.005)
        assert sink.calls == [{("orders", 0): 9, ("orders", 1): 0}]
        assert tracker.due() == {}
    finally:
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer


def decoded(topic: str, partition: int, first: int, last: int) -> list[Decoded]:
    _, event = order(T0)
    return [
        Decoded(SourceRecord(topic, partition, o, None, b"{}", T0), event)
        for o in range(first, last + 1)
    ]


class Marks:
    """The store's watermarks, and the reads made of them."""

    def __init__(self, marks: dict[Part, int]) -> None:
        self.marks = marks
        self.reads: list[list[Part]] = []

    async def read(self, parts: Sequence[Part]) -> dict[Part, int]:
        self.reads.append(list(parts))
        return {p: self.marks[p] for p in parts if p in self.marks}


def offsets(settled: frozenset[SourcePosition]) -> list[tuple[str, int]]:
    return sorted((p.topic, p.offset) for p in settled)


async def test_records_up_to_the_watermark_are_settled_and_read_once_per_assignment() -> None:
    marks = Marks({("orders", 0): 12, ("refunds", 0): 3})
    settled = SettledRecords(marks.read)
    batch = decoded("orders", 0, 10, 14) + decoded("refunds", 0, 0, 1) + decoded("payouts", 0, 7, 7)
    first = await settled.settled(batch)
    assert offsets(first) == [
        ("orders", 10),
        ("orders", 11),
        ("orders", 12),
        ("refunds", 0),
        ("refunds", 1),
    ]
    # Retried in place (a store call failed later in the batch): the same answer.
    assert await settled.settled(batch) == first
    assert offsets(await settled.settled(decoded("refunds", 0, 2, 5))) == [
        ("refunds", 2),
        ("refunds", 3),
    ]
    marks.marks[("orders", 0)] = 100  # written meanwhile by this worker's own deliveries
    assert await settled.settled(decoded("orders", 0, 15, 20)) == frozenset()
    assert marks.reads == [[("orders", 0), ("payouts", 0), ("refunds", 0)]]
    settled.forget()  # a rebalance: consumption restarts from the commit
    assert offsets(await settled.settled(decoded("orders", 0, 99, 101))) == [
        ("orders", 99),
        ("orders", 100),
    ]
    assert marks.reads[1:] == [[("orders", 0)]]
