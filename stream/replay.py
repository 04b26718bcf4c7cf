"""`fraudstream replay --since TIME`: rebuild Redis state from Kafka after it
was lost (a restart without persistence, a flush, a failover that dropped
writes).

It reads every input partition from the first record at or after TIME up to
the offset the worker group has committed, and runs those records through the
same pipeline as the worker with the outputs discarded: windows, duplicate
guards, first-seen facts and incidents are rebuilt, nothing is published
twice. Workers then continue from their committed offsets on rebuilt state.
Run it while the workers are stopped (it is idempotent, so running it twice,
or with workers running, counts nothing twice). It reads each record once and
publishes nothing, so it neither reads nor writes the workers' delivered
watermarks (stream.delivery): there is no redelivery to settle.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import IO

from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.durations import parse_duration_ms
from detectors.errors import ConfigError
from detectors.rulebook import Rulebook
from detectors.timestamps import parse_rfc3339_ms
from stream import kafka_io
from stream.codec import Incoming, SourceRecord
from stream.kafka_security import aiokafka_security
from stream.pipeline import Pipeline
from stream.settings import Settings
from stream.store.redis_freezes import RedisFreezeBook
from stream.store_wiring import open_store, store_config

__all__ = ["ReplaySummary", "parse_since", "run_replay"]


@dataclass(slots=True)
class ReplaySummary:
    partitions: int = 0
    records: int = 0
    seconds: float = 0.0


def parse_since(text: str, now_ms: int) -> int:
    """An RFC 3339 time, or a duration back from now ("36h", "7d")."""
    try:
        return parse_rfc3339_ms(text)
    except ValueError:
        pass
    try:
        return now_ms - parse_duration_ms(text)
    except ValueError:
        raise ConfigError(
            "--since", f"expected an RFC 3339 time or a duration, got {text!r}"
        ) from None


async def _bounds(settings: Settings, since_ms: int) -> dict[TopicPartition, tuple[int, int]]:
    """(first offset at/after since, group's committed offset) per partition."""
    inputs = list(settings.topics.inputs().values())
    options = aiokafka_security(settings.kafka_security)
    tps = await kafka_io.partitions(settings.kafka_bootstrap, inputs, options)
    committed = await kafka_io.committed_offsets(settings.kafka_bootstrap, settings.app_id, options)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, **options)
    await consumer.start()
    try:
        starts = await consumer.offsets_for_times({tp: since_ms for tp in tps})
    finally:
        await consumer.stop()
    bounds = {}
    for tp in tps:
        start, done = starts.get(tp), committed.get(tp)
        if start is not None and done is not None and start.offset < done:
            bounds[tp] = (start.offset, done)
    return bounds


async def run_replay(
    settings: Settings, rulebook: Rulebook, since_ms: int, progress: IO[str] | None
) -> ReplaySummary:
    started = time.perf_counter()
    bounds = await _bounds(settings, since_ms)
    summary = ReplaySummary(partitions=len(bounds))
    if not bounds:
        return summary
    # Replayed events are older than what the workers applied since the loss:
    # lift the duplicate horizon and the first-seen back-dating limit so they
    # still count (their duplicate guards make a second replay harmless).
    ten_years = 3650 * 86_400_000
    config = dataclasses.replace(
        store_config(settings), dedup_horizon_ms=ten_years, first_seen_backdate_ms=ten_years
    )
    store = open_store(settings, config=config)
    await store.start()
    # Freezes are registered again, so the ones still active after the loss
    # get their expiry release (a repeat of one published before carries
    # the same release_id).
    pipeline = Pipeline(settings, store, rulebook, RedisFreezeBook(store.client, store.namespace))
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        **aiokafka_security(settings.kafka_security),
    )
    await consumer.start()
    try:
        consumer.assign(list(bounds))
        for tp, (start, _) in bounds.items():
            consumer.seek(tp, start)
        remaining = set(bounds)
        while remaining:
            items = await _fetch(consumer, settings, bounds, remaining)
            if items:
                # One fetch spans several partitions: apply it in record-time order.
                items.sort(key=lambda item: item.record.timestamp_ms)
                await pipeline.process_mixed(items, int(time.time() * 1000))
                summary.records += len(items)
                if progress:
                    print(f"  replayed {summary.records:,} records", file=progress, flush=True)
    finally:
        await consumer.stop()
        await store.close()
    summary.seconds = time.perf_counter() - started
    return summary


async def _fetch(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    bounds: dict[TopicPartition, tuple[int, int]],
    remaining: set[TopicPartition],
) -> list[Incoming]:
    """The next records below each partition's end; a partition that reached
    its end leaves `remaining`."""
    by_name = {name: topic for topic, name in settings.topics.inputs().items()}
    fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=settings.batch_max)
    items: list[Incoming] = []
    for tp, messages in fetched.items():
        end = bounds[tp][1]
        for m in messages:
            if m.offset >= end:
                remaining.discard(tp)
                break
            record = SourceRecord.of_consumer_record(m)
            items.append(Incoming.read(by_name[m.topic], record, settings.max_event_bytes))
        if await consumer.position(tp) >= end:
            remaining.discard(tp)
    return items
