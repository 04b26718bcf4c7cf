"""The "direct" run of `python -m bench live`: the worker's pipeline (same
rules, same Redis store) fed by a plain aiokafka consumer instead of
faust's agents, publishing with a plain aiokafka producer, with the
backtest's overlap of store calls and Python work across batches
(stream.overlap).

It is a measurement, not a worker: no event-time merge across topics, no
retries, no metrics, no rebalance handling, no health pages. It answers what the faust floor alone
cannot: how fast fraudstream's own work runs here once faust's per-message
dispatch is out of the way, which is what replacing that dispatch would buy.
Run by the bench as `python -m bench direct N` (a subprocess); once N
records are done it drops its Redis namespace, prints one JSON line and exits.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.floor import ThroughputSpan
from stream.codec import Incoming, SourceRecord
from stream.gc_tuning import tune_for_streaming
from stream.overlap import OverlappedBatches
from stream.pipeline import BatchResult, Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store_wiring import open_store

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

    span, committed = ThroughputSpan(target), time.monotonic()

    async def publish(result: BatchResult, records: int) -> None:
        for out in result.outputs:  # enqueue only, as the worker does
            await producer.send(out.topic, out.value, key=out.key)
        span.add(records)

    overlap = OverlappedBatches(Pipeline(settings, store, load_rulebook(settings)), publish)
    tune_for_streaming()
    await consumer.start()
    await producer.start()
    try:
        while span.report is None:
            batch = await consumer.getmany(timeout_ms=100, max_records=settings.batch_max)
            items = [
                Incoming.read(
                    topic_of[m.topic], SourceRecord.of_consumer_record(m), settings.max_event_bytes
                )
                for messages in batch.values()
                for m in messages
            ]
            await (overlap.submit(items) if items else overlap.drain())
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


def run(settings: Settings, target: int) -> None:
    asyncio.run(run_direct(settings, target))
