"""The console's one Kafka producer: what an operator does in the console
is a record on a topic the workers read (a verdict on `risk-verdicts`, a
release, list entry, snooze or rule mode on `risk-control` and its audit
topic), never a row written here. Each send returns once Kafka
acknowledged it (acks=all, idempotent producer), so a page that says
"done" means the record is durable; a timeout raises and the page says
the record may not have been written (a send abandoned at the timeout may
still land): the forms' ids make sending the same form again safe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer

from detectors.control import ControlRecord
from detectors.verdicts import Verdict
from stream.control_cli import encode
from stream.kafka_security import aiokafka_security
from stream.settings import Settings

__all__ = ["SEND_TIMEOUT_S", "KafkaPublisher", "PublishControl", "PublishVerdict"]

PublishVerdict = Callable[[Verdict], Awaitable[None]]
PublishControl = Callable[[ControlRecord], Awaitable[None]]
SEND_TIMEOUT_S = 10.0


class KafkaPublisher:
    """Publishes verdicts and control records; the producer starts on first
    use, so a console that is only browsed never connects a producer."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def verdict(self, verdict: Verdict) -> None:
        """Keyed by the alert id: one partition orders an alert's verdicts."""
        topic = self._settings.topics.verdicts
        await self._send(topic, verdict.alert_id.encode(), verdict.to_bytes())

    async def control(self, record: ControlRecord) -> None:
        """The state topic first, then its audit twin, as the CLI does: a
        record in the audit topic always took effect."""
        key, value = record.key().encode(), encode(record)
        for topic in (self._settings.topics.control, self._settings.topics.control_audit):
            await self._send(topic, key, value)

    async def _send(self, topic: str, key: bytes, value: bytes) -> None:
        producer = await self._started()
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await producer.send_and_wait(topic, value, key=key)

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._settings.kafka_bootstrap,
                    acks="all",
                    enable_idempotence=True,
                    **aiokafka_security(self._settings.kafka_security),
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
