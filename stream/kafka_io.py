"""Small Kafka helpers for tools around the worker (replay, the simulator's
publisher, the demo, the benchmarks, the tests): produce a batch, read a
topic to its end, and wait until a consumer group has committed everything.

Not used on the worker's hot path, which goes through faust.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

__all__ = [
    "MAX_REQUEST_BYTES",
    "Compression",
    "committed_offsets",
    "end_offsets",
    "partitions",
    "produce",
    "read_from",
    "wait_committed",
]

MAX_REQUEST_BYTES = 4 * 1024 * 1024


class Compression(StrEnum):
    """The record-batch codecs Kafka producers use (aiokafka's names)."""

    GZIP = "gzip"
    SNAPPY = "snappy"
    LZ4 = "lz4"
    ZSTD = "zstd"


async def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None]],
    compression: Compression | None = None,
    partition: int | None = None,
    client_options: Mapping[str, Any] | None = None,
) -> None:
    """Send (key, value) pairs and wait until every one is acknowledged.
    Without `partition`, the key chooses it (Kafka's default partitioner).
    `client_options`: extra aiokafka client arguments (credentials)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        max_request_size=MAX_REQUEST_BYTES,
        linger_ms=5,
        compression_type=compression.value if compression else None,
        **(client_options or {}),
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value=v, key=k, partition=partition) for k, v in records
        ]
        await producer.flush()
        for f in futures:
            await f
    finally:
        await producer.stop()


async def partitions(
    bootstrap: str, topics: Sequence[str], client_options: Mapping[str, Any] | None = None
) -> list[TopicPartition]:
    """`client_options`: extra aiokafka client arguments (credentials)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    out = []
    for topic in described:
        if topic["error_code"] != 0:
            raise LookupError(f"topic {topic['topic']}: error code {topic['error_code']}")
        out += [TopicPartition(topic["topic"], p["partition"]) for p in topic["partitions"]]
    return sorted(out)


async def end_offsets(
    bootstrap: str, topics: Sequence[str], client_options: Mapping[str, Any] | None = None
) -> dict[TopicPartition, int]:
    tps = await partitions(bootstrap, topics, client_options)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **(client_options or {}))
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def committed_offsets(
    bootstrap: str, group: str, client_options: Mapping[str, Any] | None = None
) -> dict[TopicPartition, int]:
    """The offsets `group` has committed (the next record each partition reads)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def read_from(
    bootstrap: str,
    topic: str,
    start: dict[TopicPartition, int] | None = None,
    timeout_s: float = 30.0,
    client_options: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Records of `topic` from `start` offsets (default: the beginning) to its
    current end. `client_options`: extra aiokafka client arguments (credentials)."""
    tps = await partitions(bootstrap, [topic], client_options)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **(client_options or {}),
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, (start or {}).get(tp, 0))
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                out.extend(m for m in msgs if m.offset < ends[TopicPartition(m.topic, m.partition)])
        return out
    finally:
        await consumer.stop()


async def wait_committed(
    bootstrap: str,
    group: str,
    topics: Sequence[str],
    timeout_s: float = 90.0,
    still_alive: Callable[[], str | None] | None = None,
    exclude: Collection[TopicPartition] = (),
) -> None:
    """Wait until `group` has committed every record now in `topics` (but
    the `exclude`d partitions).

    faust flushes its producer before committing input offsets, so once the
    inputs are committed every output derived from them is in Kafka.
    `still_alive` returns an error text when the consumer process died.
    """
    ends = await end_offsets(bootstrap, topics)
    for tp in exclude:
        ends.pop(tp, None)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(group)
            lagging = {
                f"{tp.topic}/{tp.partition}": (
                    committed[tp].offset if tp in committed else None,
                    end,
                )
                for tp, end in ends.items()
                if end > 0 and (tp not in committed or committed[tp].offset < end)
            }
            if not lagging:
                return
            problem = still_alive() if still_alive else None
            if problem:
                raise TimeoutError(f"consumer died while waiting: {problem}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"group {group} not caught up within {timeout_s}s: {lagging}")
            await asyncio.sleep(0.25)
    finally:
        await admin.close()
