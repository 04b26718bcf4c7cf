"""The worker's batch agents (stream.batch_agents): batches gathered from the
channel's queue up to batch_max, stale ones skipped, the rest of a batch
given up when the worker stops mid-way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import pytest

from detectors.events import Topic
from stream.batch_agents import BatchAgents
from stream.runner import BatchAbandoned
from stream.settings import Settings


@dataclass
class Message:
    """The fields of a faust message the agents read."""

    offset: int
    stale: bool = False
    topic: str = "orders"
    partition: int = 0
    key: bytes = b"k"
    value: bytes = b"{}"
    timestamp: float = 1.0


@dataclass
class Consumer:
    tracked: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    given_up: list[int] = field(default_factory=list)

    def track(self, messages: list[Message]) -> bool:
        if any(m.stale for m in messages):
            return False
        self.tracked += [m.offset for m in messages]
        return True

    def ack_batch(self, messages: Any) -> int:
        self.acked += [m.offset for m in messages]
        return 0

    def give_up(self, messages: Any) -> int:
        offsets = [m.offset for m in messages]
        self.given_up += offsets
        return len(offsets)


class Stream:
    """One batch through `async for`, the others left in the channel's queue."""

    def __init__(self, *batches: list[Message]) -> None:
        self.first, *rest = batches
        self.channel = SimpleNamespace(queue=asyncio.Queue())
        for batch in rest:
            self.channel.queue.put_nowait(batch)

    async def __aiter__(self) -> AsyncIterator[list[Message]]:
        yield self.first


def agents(consumer: Consumer, batch_max: int = 4, handle: Any = None) -> BatchAgents:
    app = SimpleNamespace(consumer=consumer)

    async def started() -> None:
        return None

    runner = SimpleNamespace(handle=handle)
    delivery = SimpleNamespace(batch=lambda records: _null())
    return BatchAgents(
        Settings(batch_max=batch_max, align_enabled=False),
        cast(Any, app),
        cast(Any, runner),
        cast(Any, delivery),
        cast(Any, None),
        started,
        started,
    )


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def batch(*offsets: int, stale: bool = False) -> list[Message]:
    return [Message(o, stale) for o in offsets]


async def test_queued_batches_are_gathered_up_to_batch_max() -> None:
    consumer = Consumer()
    stream = Stream(batch(0, 1), batch(10, 11), batch(20), batch(30))
    got = [[m.offset for m in b] async for b in agents(consumer).batches(stream)]
    assert got == [[0, 1, 10, 11]]  # the last two wait for the next round
    assert stream.channel.queue.qsize() == 2


async def test_a_stale_batch_is_skipped() -> None:
    consumer = Consumer()
    stream = Stream(batch(0, stale=True), batch(10), batch(20, stale=True))
    got = [[m.offset for m in b] async for b in agents(consumer, 10).batches(stream)]
    assert got == [[10]]
    assert consumer.tracked == [10]


async def test_the_direct_path_acks_each_applied_slice() -> None:
    applied: list[list[int]] = []

    async def handle(items: Any) -> None:
        applied.append([i.record.offset for i in items])

    consumer = Consumer()
    stream = Stream(batch(0, 1, 2), batch(3, 4))
    await agents(consumer, 4, handle).consume_direct(Topic.ORDERS, stream)
    assert applied == [[0, 1, 2, 3], [4]]  # gathered, then sliced at batch_max
    assert consumer.acked == [0, 1, 2, 3, 4] and not consumer.given_up


@pytest.mark.parametrize("stop", [BatchAbandoned, asyncio.CancelledError])
async def test_a_stop_mid_batch_gives_up_the_rest_unacked(stop: type[BaseException]) -> None:
    calls = 0

    async def handle(items: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise stop()

    consumer = Consumer()
    stream = Stream(batch(0, 1, 2, 3, 4))
    run = agents(consumer, 2, handle).consume_direct(Topic.ORDERS, stream)
    if stop is asyncio.CancelledError:
        with pytest.raises(asyncio.CancelledError):
            await run
    else:
        await run
    assert consumer.acked == [0, 1]
    assert consumer.given_up == [2, 3, 4]
