"""The batch drain loop, conductor and acks (stream.batch_delivery,
stream.batch_conductor) on faust's own consumer and queues, without Kafka:
the fetch and the agents' side are small fakes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import faust
import pytest
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from stream.batch_conductor import PartitionHandler
from stream.batch_delivery import BatchConsumer
from stream.faust_wiring import faust_app
from stream.settings import Settings

ORDERS, PAYOUTS = TP("orders", 0), TP("payouts", 1)
_apps = itertools.count()


def record(tp: TP, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(tp.topic, tp.partition, offset, 1_000, 0, b"k", b"v", None, 1, 1, ())


class Harness:
    """A BatchConsumer whose fetch returns what a test queues and whose
    hand-over (the conductor) records what it is given."""

    def __init__(self, app: faust.App) -> None:
        self.app = app
        self.consumer = cast(BatchConsumer, app.consumer)
        self.fetches: list[dict[TP, list[Any]]] = []
        self.handed: list[list[Any]] = []
        self.on_hand: Callable[[list[Any]], Any] | None = None
        self.commits = 0
        self.seeks = 0
        consumer: Any = self.consumer
        consumer._wait_next_records = self._wait_next_records
        consumer.callback = self._callback
        consumer.highwater = lambda tp: 1_000
        consumer.commit = self._commit
        consumer.assignment = lambda: {ORDERS, PAYOUTS}
        consumer.perform_seek = self._seek
        app.flow_control.resume()  # as after faust's first assignment

    async def _wait_next_records(self, timeout: float) -> tuple[Any, Any]:
        return (self.fetches.pop(0) if self.fetches else {}), None

    async def _callback(self, messages: list[Any]) -> None:
        self.handed.append(messages)
        if self.on_hand is not None:
            await self.on_hand(messages)

    async def _commit(self, *args: Any, **kwargs: Any) -> bool:
        self.commits += 1
        return True

    async def _seek(self) -> None:
        self.seeks += 1

    async def fetch_and_deliver(self, records: dict[TP, list[Any]]) -> None:
        self.fetches.append(records)
        fetched = await self.consumer._fetch_batches(timeout=0)
        assert fetched is not None
        await self.consumer._deliver_all(*fetched)

    def offsets(self) -> list[list[int]]:
        return [[m.offset for m in batch] for batch in self.handed]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """Built inside the running loop: faust's services bind to it."""
    app = faust_app(Settings(app_id=f"batch-unit-{next(_apps)}"), web_enabled=False)
    yield Harness(app)


async def test_each_partition_batch_is_handed_over_in_one_step(harness: Harness) -> None:
    records = {ORDERS: [record(ORDERS, o) for o in range(5)], PAYOUTS: [record(PAYOUTS, 7)]}
    await harness.fetch_and_deliver(records)
    assert harness.offsets() == [[0, 1, 2, 3, 4], [7]]
    consumer = harness.consumer
    assert consumer._read_offset[ORDERS] == 4 and consumer._read_offset[PAYOUTS] == 7
    assert set(harness.app.monitor.stream_inbound_time) == {ORDERS, PAYOUTS}
    assert consumer.book.pending(ORDERS) == 5  # pending until acked


async def test_records_below_the_read_offset_are_not_handed_out_again(harness: Harness) -> None:
    harness.consumer._read_offset[ORDERS] = 5
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, o) for o in range(3, 8)]})
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, o) for o in range(2, 5)]})
    assert harness.offsets() == [[5, 6, 7]]


async def test_holes_in_offsets_are_committed_past(harness: Harness) -> None:
    # 3 and 4 are transaction markers: Kafka never returns them.
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, o) for o in (0, 1, 2, 5, 6)]})
    consumer = harness.consumer
    assert consumer.track(harness.handed[0])
    assert consumer.ack_batch(harness.handed[0]) == 5
    assert consumer._new_offset(ORDERS) == 7


async def test_a_generation_change_mid_fetch_hands_out_nothing_more(harness: Harness) -> None:
    async def rebalance(messages: list[Any]) -> None:
        harness.app.consumer_generation_id += 1

    harness.on_hand = rebalance
    records = {ORDERS: [record(ORDERS, o) for o in range(3)], PAYOUTS: [record(PAYOUTS, 10)]}
    await harness.fetch_and_deliver(records)
    assert harness.offsets() == [[0, 1, 2]]
    consumer = harness.consumer
    assert PAYOUTS not in consumer._read_offset or consumer._read_offset[PAYOUTS] is None
    # Payouts' record stays pending: nothing at or past it can be committed.
    consumer.book.delivered(PAYOUTS, [11])
    consumer.book.acked(PAYOUTS, 11)
    assert consumer._new_offset(PAYOUTS) == 10


async def test_a_stale_batch_is_refused_by_the_agent(harness: Harness) -> None:
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, 0)]})
    batch = harness.handed[0]
    harness.app.consumer_generation_id += 1
    assert not harness.consumer.track(batch)
    assert not harness.consumer.unacked


async def test_flow_suspended_mid_hand_over_then_resumed(harness: Harness) -> None:
    consumer = harness.consumer
    forever = asyncio.Event()

    async def blocked(messages: list[Any]) -> None:
        await forever.wait()  # the conductor waits for faust's flow control

    harness.on_hand = blocked
    task = asyncio.ensure_future(
        harness.fetch_and_deliver({ORDERS: [record(ORDERS, o) for o in range(3)]})
    )
    await asyncio.sleep(0.01)
    assert not task.done()
    consumer.suspend_flow.set()  # a rebalance: one wait per batch ends
    await asyncio.wait_for(task, 1.0)
    assert consumer.book.pending(ORDERS) == 3  # uncommitted until the seek
    consumer.suspend_flow.clear()
    harness.on_hand = None
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, 3)]})
    assert harness.offsets()[-1] == [3]


async def test_flow_stopped_fetch_seeks_back_and_hands_out_nothing(harness: Harness) -> None:
    harness.consumer.stop_flow()
    harness.fetches.append({ORDERS: [record(ORDERS, 0)]})
    assert await harness.consumer._fetch_batches(timeout=0) is None
    assert harness.seeks == 1 and not harness.handed


async def test_a_cancelled_put_does_not_end_the_drain_loop(harness: Harness) -> None:
    async def cancelled(messages: list[Any]) -> None:
        raise asyncio.CancelledError  # a put waiter cancelled by a rebalance

    harness.on_hand = cancelled
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, 0)]})
    assert harness.offsets() == [[0]]


async def test_commit_every_commits_between_batches(harness: Harness) -> None:
    consumer = harness.consumer
    consumer._commit_every = 3
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, o) for o in range(3)]})
    consumer.track(harness.handed[0])
    consumer.ack_batch(harness.handed[0])
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, 3)]})
    assert harness.commits == 1 and consumer._n_acked == 0


async def test_acks_in_any_order_never_commit_past_an_unacked_record(harness: Harness) -> None:
    consumer = harness.consumer
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, o) for o in range(10, 20)]})
    batch = harness.handed[0]
    consumer.track(batch)
    consumer.ack_batch(batch[1:5])
    # Committing 10 means "read again from 10": offset 10 is not passed.
    assert consumer._filter_committable_offsets([ORDERS]) == {ORDERS: 10}
    consumer.ack_batch(batch[:1])
    assert consumer._filter_committable_offsets([ORDERS]) == {ORDERS: 15}
    assert consumer.give_up(batch[5:]) == 5
    assert not consumer.unacked  # faust no longer waits for them
    assert consumer._new_offset(ORDERS) == 15  # given up: not committed


async def test_a_seek_keeps_records_agents_still_hold(harness: Harness) -> None:
    consumer = harness.consumer
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, o) for o in range(5)]})
    batch = harness.handed[0]
    consumer.track(batch)
    consumer.ack_batch(batch[:2])
    consumer.give_up(batch[4:])
    consumer.reseek_book()  # 2 and 3 are still being applied
    assert consumer.book.pending(ORDERS) == 2
    assert consumer._new_offset(ORDERS) == 2
    consumer.ack_batch(batch[2:4])
    assert consumer._new_offset(ORDERS) == 4  # 4 was given up: read again


async def test_multiple_subscribers_each_ack_once(harness: Harness) -> None:
    consumer = harness.consumer
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, 0)]})
    batch = harness.handed[0]
    batch[0].refcount = 2  # the conductor put it on two channels
    consumer.track(batch)
    assert consumer.ack_batch(batch) == 0
    assert consumer._new_offset(ORDERS) is None
    assert consumer.ack_batch(batch) == 1
    assert consumer._new_offset(ORDERS) == 1


async def test_revoking_a_partition_forgets_its_book(harness: Harness) -> None:
    consumer = harness.consumer
    await harness.fetch_and_deliver({ORDERS: [record(ORDERS, 0)]})
    consumer.on_batch_pressure(ORDERS)
    consumer._on_partitions_revoked = _no_callback
    await consumer.on_partitions_revoked({ORDERS})
    assert consumer.book.pending(ORDERS) == 0
    assert ORDERS not in consumer._pressured


async def _no_callback(revoked: Any) -> None:
    return None


class Channel:
    def __init__(self, app: faust.App, maxsize: int) -> None:
        self.queue = app.FlowControlQueue(maxsize=maxsize, clear_on_resume=True)

    async def put(self, value: Any) -> None:
        await self.queue.put(value)


async def test_a_full_queue_waits_and_a_rebalance_clearing_it_ends_the_wait(
    harness: Harness,
) -> None:
    app = harness.app
    consumer = harness.consumer
    channel = Channel(app, maxsize=1)
    handler = PartitionHandler(
        app, ORDERS, {channel}, consumer.on_batch_pressure, consumer.on_batch_relief
    )
    await handler([])  # takes the queue's one place
    assert channel.queue.full()
    second = [consumer._to_message(ORDERS, record(ORDERS, 1))]
    waiting = asyncio.ensure_future(handler(second))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    channel.queue.clear()  # what a rebalance does: cancels the waiting put
    await asyncio.wait_for(waiting, 1.0)
    assert not waiting.cancelled()  # the cancellation stayed in the put's own task


async def test_queue_pressure_stops_fetching_the_partition_until_a_batch_is_taken(
    harness: Harness,
) -> None:
    app = harness.app
    consumer = harness.consumer
    consumer._active_partitions = {ORDERS, PAYOUTS}
    channel = Channel(app, maxsize=5)  # pressure from 4 queued batches
    handler = PartitionHandler(
        app, ORDERS, {channel}, consumer.on_batch_pressure, consumer.on_batch_relief
    )
    for _ in range(5):
        await handler([])
    assert consumer._get_active_partitions() == {PAYOUTS}
    harness.fetches.append({ORDERS: [record(ORDERS, 0)]})
    fetched = await consumer._fetch_batches(timeout=0)
    assert fetched is not None and [tp for tp, _ in fetched[1]] == [ORDERS]  # fetched: kept
    while not channel.queue.empty():
        channel.queue.get_nowait()  # the agent takes batches
    assert consumer._get_active_partitions() == {ORDERS, PAYOUTS}


async def test_queue_relief_leaves_a_partition_the_merge_paused(harness: Harness) -> None:
    consumer = harness.consumer
    consumer._active_partitions = {ORDERS, PAYOUTS}
    consumer.on_batch_pressure(ORDERS)
    consumer.on_buffer_full(ORDERS)  # the event-time merge pauses it too
    consumer.on_batch_relief(ORDERS)
    assert consumer._get_active_partitions() == {PAYOUTS}
    consumer.on_buffer_drop(ORDERS)  # the merge resumes it
    assert consumer._get_active_partitions() == {ORDERS, PAYOUTS}


async def test_records_of_a_partition_paused_mid_fetch_stay_uncommitted(harness: Harness) -> None:
    consumer = harness.consumer
    records = {ORDERS: [record(ORDERS, 5)], PAYOUTS: [record(PAYOUTS, 0)]}
    consumer_: Any = consumer
    consumer_._wait_next_records = _returning(records, {PAYOUTS})  # orders paused meanwhile
    fetched = await consumer._fetch_batches(timeout=0)
    assert fetched is not None and [tp for tp, _ in fetched[1]] == [PAYOUTS]
    consumer.book.delivered(ORDERS, [6])
    consumer.book.acked(ORDERS, 6)
    assert consumer._new_offset(ORDERS) == 5  # never past the record not handed out


def _returning(records: Any, active: set[TP]) -> Callable[[float], Any]:
    async def wait_next_records(timeout: float) -> tuple[Any, Any]:
        return records, active

    return wait_next_records
