"""Runs one batch through the pipeline until it is fully applied and published.

This is the loop guard the agents need (NOTES §2): faust acks a batch as soon
as the agent asks for the next one, and acks it even when an exception
escapes. So nothing escapes: transient failures are retried in place with
capped exponential backoff, and a batch that keeps failing for another reason
is split so that only the records that really fail go to the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import orjson

from detectors.errors import StoreUnavailable
from detectors.events import Topic
from stream.codec import DeadLetter, SourceRecord
from stream.metrics import Metrics
from stream.pipeline import BatchResult, OutputRecord, Pipeline
from stream.settings import Settings

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[OutputRecord]], Awaitable[None]]


class BatchAbandoned(Exception):
    """The worker is stopping while a batch still fails: give it up *unacked*
    (it will be redelivered to whoever owns the partition next)."""


NON_TRANSIENT_ATTEMPTS = 3


class BatchRunner:
    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        publish: Publish,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._publish = publish
        self._metrics = metrics
        self._clock = clock
        self._should_stop = should_stop
        self.store_healthy = True
        # (topic, partition) → (last processed offset, its Kafka timestamp ms): for lag.
        self.positions: dict[tuple[str, int], tuple[int, int]] = {}

    async def handle(self, topic: Topic, records: Sequence[SourceRecord]) -> None:
        """Returns only once every record is applied and its outputs are queued."""
        started = time.perf_counter()
        name = records[0].topic if records else topic.value
        self._metrics.events_consumed.labels(name).inc(len(records))
        failures = 0
        backoff = 0.1
        while True:
            try:
                result = await self._pipeline.process(topic, records, self._now_ms())
                await self._publish_until_done(name, result.outputs)
                break
            except StoreUnavailable as exc:
                self._store_down(name, exc, backoff)
            except BatchAbandoned:
                raise
            except Exception:
                failures += 1
                log.exception(
                    "batch of %d from %s failed (attempt %d)", len(records), name, failures
                )
                self._metrics.batch_retries.labels(name, "error").inc()
                if failures >= NON_TRANSIENT_ATTEMPTS:
                    result = await self._one_by_one(topic, records)
                    break
            await self._pause(backoff)
            backoff = min(backoff * 2, self._settings.retry_max_backoff_s)
        self._store_up()
        self._record(name, result)
        now = self._clock()
        latency = self._metrics.event_to_decision.labels(name)
        for record in records:
            if record.timestamp_ms > 0:
                latency.observe(max(now - record.timestamp_ms / 1000, 0.0))
            self.positions[(record.topic, record.partition)] = (record.offset, record.timestamp_ms)
        self._metrics.batch_seconds.labels(name).observe(time.perf_counter() - started)
        self._metrics.last_processed.labels(name).set(now)

    async def _publish_until_done(self, name: str, outputs: Sequence[OutputRecord]) -> None:
        """A publish failure (broker down, timeout) is never the records' fault:
        retry in place, never dead-letter because of it, never drop it."""
        backoff = 0.1
        while True:
            try:
                await self._publish(outputs)
                return
            except (asyncio.CancelledError, BatchAbandoned):
                raise
            except Exception as exc:
                log.warning("publishing %d records failed (%s); retrying", len(outputs), exc)
                self._metrics.batch_retries.labels(name, "publish").inc()
                await self._pause(backoff)
                backoff = min(backoff * 2, self._settings.retry_max_backoff_s)

    async def _pause(self, seconds: float) -> None:
        if self._should_stop():
            raise BatchAbandoned
        await asyncio.sleep(seconds)
        if self._should_stop():
            raise BatchAbandoned

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _store_down(self, name: str, exc: StoreUnavailable, backoff: float) -> None:
        if self.store_healthy:
            log.warning("store unavailable (%s); retrying batch every <= %.1fs", exc, backoff)
        self.store_healthy = False
        self._metrics.store_up.set(0)
        self._metrics.batch_retries.labels(name, "store_unavailable").inc()

    def _store_up(self) -> None:
        if not self.store_healthy:
            log.info("store reachable again")
        self.store_healthy = True
        self._metrics.store_up.set(1)

    async def _one_by_one(self, topic: Topic, records: Sequence[SourceRecord]) -> BatchResult:
        """Isolate the records that fail on their own; dead-letter just those."""
        merged = BatchResult()
        for record in records:
            backoff = 0.1
            while True:
                try:
                    result = await self._pipeline.process(topic, [record], self._now_ms())
                    await self._publish_until_done(record.topic, result.outputs)
                    break
                except BatchAbandoned:
                    raise
                except StoreUnavailable as exc:
                    self._store_down(record.topic, exc, backoff)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, self._settings.retry_max_backoff_s)
                except Exception as exc:
                    log.exception(
                        "record %s/%d/%d fails alone: dead-lettering",
                        record.topic,
                        record.partition,
                        record.offset,
                    )
                    letter = DeadLetter(record, "processing_error", f"{type(exc).__name__}: {exc}")
                    wire = letter.to_wire(self._now_ms(), self._settings.dlq_value_max_bytes)
                    result = BatchResult(
                        dead_letters=[letter],
                        outputs=[
                            OutputRecord(self._settings.topics.dlq, record.key, orjson.dumps(wire))
                        ],
                    )
                    await self._publish_until_done(record.topic, result.outputs)
                    break
            merged.outputs += result.outputs
            merged.valid += result.valid
            merged.dead_letters += result.dead_letters
            for status, n in result.statuses.items():
                merged.statuses[status] = merged.statuses.get(status, 0) + n
            merged.alerts_new += result.alerts_new
            merged.alerts_reemitted += result.alerts_reemitted
            merged.freezes += result.freezes
            merged.late_values += result.late_values
        return merged

    def _record(self, name: str, result: BatchResult) -> None:
        m = self._metrics
        for status, n in result.statuses.items():
            m.events_processed.labels(name, status.value).inc(n)
        other = result.valid - sum(result.statuses.values())
        if other > 0:
            m.events_processed.labels(name, "no_rule").inc(other)
        for letter in result.dead_letters:
            m.dead_letters.labels(name, letter.kind).inc()
        for rule in result.alerts_new:
            m.alerts.labels(rule.rule_id, rule.severity.value, rule.mode.value).inc()
        for rule in result.alerts_reemitted:
            m.alerts_reemitted.labels(rule.rule_id).inc()
        for freeze in result.freezes:
            m.freezes.labels(freeze.kind.value, "freeze").inc()
            if freeze.amount_minor is not None and freeze.currency is not None:
                m.funds_held.labels(freeze.currency).inc(freeze.amount_minor)
        for rule_id, n in result.rule_failures.items():
            m.rule_failures.labels(rule_id).inc(n)
        if result.late_values:
            m.late_values.labels(name).inc(result.late_values)
