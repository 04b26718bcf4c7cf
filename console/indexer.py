"""The indexer: one Kafka consumer (its own group, outside faust) that reads
`risk-alerts`, both freeze topics and `risk-control` into Postgres.

At least once, idempotent: a fetched batch is mapped (`console.mapping`),
written in one transaction, and only then are its offsets committed; a
crash in between redelivers records whose rows are already there, and the
keyed inserts of `console.index_store` ignore them. A record that cannot be
used is written to `rejected_records`, counted and logged, and the batch
goes on. A database that refuses the batch as a whole is retried in place
(offsets wait); a batch refused for its data is written record by record, so
only the records the database refuses on their own are rejected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from console.index_store import write_rows
from console.mapping import index_record, rejected
from console.metrics import ConsoleMetrics
from console.rows import Position, RejectedRow, RejectReason, Row, Source
from stream.kafka_security import aiokafka_security
from stream.settings import Settings

__all__ = ["FETCH_MAX_RECORDS", "Indexed", "Indexer", "source_topics"]

log = logging.getLogger(__name__)
FETCH_WAIT_MS = 200
FETCH_MAX_RECORDS = 1000
RETRY_MAX_S = 10.0

Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


def source_topics(settings: Settings) -> dict[str, Source]:
    t = settings.topics
    return {
        t.alerts: Source.ALERTS,
        t.benefit_freezes: Source.BENEFIT_FREEZES,
        t.fund_freezes: Source.FUND_FREEZES,
        t.control: Source.CONTROL,
        t.verdicts: Source.VERDICTS,
    }


@dataclass(frozen=True, slots=True)
class Indexed:
    """One record and the rows it gives."""

    position: Position
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    rows: tuple[Row, ...]


class Indexer:
    def __init__(
        self, settings: Settings, group_id: str, connect: Connect, metrics: ConsoleMetrics
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.connect = connect
        self.metrics = metrics
        self.sources = source_topics(settings)
        self.consumer: AIOKafkaConsumer | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._next: dict[TopicPartition, int] = {}  # per partition, the next offset to write

    def assigned(self) -> int:
        return len(self.consumer.assignment()) if self.consumer is not None else 0

    async def run(self) -> None:
        """Until cancelled."""
        consumer = AIOKafkaConsumer(
            *self.sources,
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **aiokafka_security(self.settings.kafka_security),
        )
        self.consumer = consumer
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(
                    timeout_ms=FETCH_WAIT_MS, max_records=FETCH_MAX_RECORDS
                )
                if batches:
                    await self._index(consumer, batches)
                self._report_lag(consumer)
        finally:
            await consumer.stop()
            if self._conn is not None:
                await self._conn.close()

    async def _index(
        self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]
    ) -> None:
        items = await self.store([self._map(m) for msgs in batches.values() for m in msgs])
        written = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items()}
        self._next.update(written)
        try:
            await consumer.commit(written)
        except KafkaError as exc:  # a rebalance: the records come again, and change nothing
            log.warning("indexer: offsets not committed (%s); the batch will be redelivered", exc)
        self._count(items)

    def _map(self, message: Any) -> Indexed:
        position = Position(message.topic, message.partition, message.offset)
        rows = index_record(self.sources[message.topic], position, message.key, message.value)
        return Indexed(position, message.key, message.value, message.timestamp, rows)

    async def store(self, items: Sequence[Indexed]) -> list[Indexed]:
        """Write every item's rows, retried until the database takes them;
        the items as written (a record the database refused on its own
        becomes its rejection)."""
        delay = 0.5
        while True:
            try:
                conn = await self._connection()
                try:
                    async with conn.transaction():
                        await write_rows(conn, [r for i in items for r in i.rows])
                    return list(items)
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as exc:
                    log.warning("indexer: batch refused (%s); writing it record by record", exc)
                    return [await self._store_one(conn, item) for item in items]
            except psycopg.OperationalError as exc:
                self.metrics.database_errors.inc()
                log.error("indexer: database unavailable (%s); retrying in %.1fs", exc, delay)
                await self._drop_connection()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _store_one(self, conn: psycopg.AsyncConnection[Any], item: Indexed) -> Indexed:
        try:
            async with conn.transaction():
                await write_rows(conn, item.rows)
            return item
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            refused = rejected(
                item.position, item.key, item.value, RejectReason.STORAGE_ERROR, str(exc)
            )
            async with conn.transaction():
                await write_rows(conn, [refused])
            return Indexed(item.position, item.key, item.value, item.timestamp_ms, (refused,))

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await self.connect()
        return self._conn

    async def _drop_connection(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def _count(self, items: Sequence[Indexed]) -> None:
        now_ms = time.time() * 1000
        for item in items:
            topic = item.position.topic
            bad = [r for r in item.rows if isinstance(r, RejectedRow)]
            for r in bad:
                self.metrics.rejected.labels(topic, r.reason.value).inc()
                log.error(
                    "indexer: %s[%d]@%d not indexed: %s: %s",
                    topic,
                    item.position.partition,
                    item.position.offset,
                    r.reason.value,
                    r.message,
                )
            if not bad:
                self.metrics.indexed.labels(topic).inc()
            self.metrics.delay.observe(max(0.0, (now_ms - item.timestamp_ms) / 1000))

    def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        """From the broker's high watermark (learnt with each fetch) and the
        next offset this indexer has written, per assigned partition: no
        request, nothing to wait for during a rebalance."""
        lag: dict[str, int] = dict.fromkeys(self.sources, 0)
        for tp in consumer.assignment():
            high, written = consumer.highwater(tp), self._next.get(tp)
            if high is not None and written is not None:
                lag[tp.topic] += max(0, high - written)
        for topic, value in lag.items():
            self.metrics.lag.labels(topic).set(value)
