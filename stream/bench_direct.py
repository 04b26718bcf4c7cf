"""The "direct" run of `fraudstream bench`: the worker's pipeline (same
rules, same Redis store) fed by a plain aiokafka consumer instead of
faust's agents, publishing with a plain aiokafka producer, with the
backtest's overlap of store calls and Python work across batches.

It is a measurement, not a worker: no event-time merge across topics, no
retries, no metrics, no rebalance handling, no health pages. It answers what the faust floor alone
cannot: how fast fraudstream's own work runs here once faust's per-message
dispatch is out of the way, which is what replacing that dispatch would buy.
Run by the bench as `fraudstream bench-direct N` (a subprocess); once N
records are done it drops its Redis namespace, prints one JSON line and exits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from detectors.events import Topic
from stream.bench_floor import ThroughputSpan
from stream.codec import SourceRecord
from stream.gc_tuning import tune_for_streaming
from stream.pipeline import OutputRecord, Pipeline, Prepared
from stream.rules_loading import load_rulebook, open_store
from stream.settings import Settings
from stream.store.base import EventObservations

COMMIT_INTERVAL_S = 2.8  # faust's default broker_commit_interval


async def run_direct(settings: Settings, target: int) -> None:
    inputs = settings.topics.inputs()
    topic_of = {name: topic for topic, name in inputs.items()}
    store = open_store(settings, namespace=settings.redis_namespace + "-direct")
    await store.start()
    consumer = AIOKafkaConsumer(
        *inputs.values(),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.app_id + "-direct",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)

    async def publish(outputs: Sequence[OutputRecord]) -> None:
        for out in outputs:  # enqueue only, as the worker does
            await producer.send(out.topic, out.value, key=out.key)

    overlap = _Overlap(Pipeline(settings, store, load_rulebook(settings)), publish)
    tune_for_streaming()
    await consumer.start()
    await producer.start()
    span, committed = ThroughputSpan(target), time.monotonic()
    try:
        while span.report is None:
            batch = await consumer.getmany(timeout_ms=100, max_records=settings.batch_max)
            items = [
                (topic_of[m.topic], _record(m)) for messages in batch.values() for m in messages
            ]
            done = await (overlap.submit(items) if items else overlap.drain())
            if done:
                span.add(done)
            if time.monotonic() - committed > COMMIT_INTERVAL_S:
                await producer.flush()
                await consumer.commit()
                committed = time.monotonic()
    finally:
        overlap.cancel()
        await consumer.stop()
        await producer.stop()
        await store.drop_namespace()
        await store.close()
    span.print_report()  # after the clean-up: the bench stops this process once it reads it


class _Overlap:
    """The backtest's overlap: batch k+1 is prepared while Redis applies k,
    sent as soon as k's reply is in, and k is judged while Redis applies k+1."""

    def __init__(
        self, pipeline: Pipeline, publish: Callable[[Sequence[OutputRecord]], Awaitable[None]]
    ) -> None:
        self._pipeline = pipeline
        self._publish = publish
        self._applying: tuple[Prepared, int, int, asyncio.Task[list[EventObservations]]] | None
        self._applying = None

    async def submit(self, items: list[tuple[Topic, SourceRecord]]) -> int:
        """Start this batch; returns how many records of the previous one are done."""
        now_ms = int(time.time() * 1000)
        prepared = self._pipeline.prepare(items, now_ms)
        previous, self._applying = self._applying, None
        observed = await previous[3] if previous is not None else []
        task = asyncio.create_task(self._pipeline.observe(prepared))
        self._applying = (prepared, now_ms, len(items), task)
        return await self._conclude(previous, observed)

    async def drain(self) -> int:
        previous, self._applying = self._applying, None
        return await self._conclude(previous, await previous[3] if previous else [])

    async def _conclude(
        self,
        batch: tuple[Prepared, int, int, asyncio.Task[list[EventObservations]]] | None,
        observed: list[EventObservations],
    ) -> int:
        if batch is None:
            return 0
        result = await self._pipeline.conclude(batch[0], observed, batch[1])
        await self._publish(result.outputs)
        return batch[2]

    def cancel(self) -> None:
        if self._applying is not None:
            self._applying[3].cancel()


def _record(m: Any) -> SourceRecord:
    """An aiokafka ConsumerRecord (timestamp in ms, unlike faust's seconds)."""
    return SourceRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)


def run(settings: Settings, target: int) -> None:
    asyncio.run(run_direct(settings, target))
