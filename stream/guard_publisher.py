"""Publishes the control records the guardrails issue (a rule demoted to
shadow, the breaker tripped) to `risk-control` and then its audit copy, as
`fraudstream control` does, through the worker's own Kafka producer (its
credentials, no extra connection). Runs beside the batches: a batch never
waits for it, and the worker that issued a record already steers by it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from detectors.control import ControlRecord, RuleMode
from stream.control_cli import encode
from stream.metrics import Metrics
from stream.settings import Settings

__all__ = ["ATTEMPTS", "ControlPublisher"]

log = logging.getLogger(__name__)
ATTEMPTS = 10
RETRY_S = 1.0


class ControlPublisher:
    def __init__(self, app: Any, settings: Settings, metrics: Metrics) -> None:
        self._metrics = metrics
        self._topics = [
            app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
            for name in (settings.topics.control, settings.topics.control_audit)
        ]  # fmt: skip
        self._tasks: set[asyncio.Future[None]] = set()

    def __call__(self, record: ControlRecord) -> None:
        if isinstance(record, RuleMode):
            self._metrics.guardrail_demotions.labels(record.rule_id).inc()
        else:
            self._metrics.breaker_trips.inc()
        task = asyncio.ensure_future(self.publish(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, record: ControlRecord) -> None:
        """The state first, then the audit copy (a record in the audit topic
        always took effect); retried, since every other worker needs it."""
        key, value = record.key().encode(), encode(record)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                for topic in self._topics:
                    await (await topic.send(key=key, value=value))
                log.warning("published %s [%s]", record.key(), record.meta.control_id)
                return
            except Exception as exc:  # a broker hiccup: try again
                log.warning("publishing %s failed (attempt %d): %s", record.key(), attempt, exc)
                await asyncio.sleep(RETRY_S)
        log.error("gave up publishing %s: other workers do not follow it", record.key())
