"""Runs one batch through the pipeline until it is fully applied and published.

This is the loop guard the agents need: faust acks a batch as soon
as the agent asks for the next one, and acks it even when an exception
escapes. So nothing escapes: transient failures are retried in place with
capped exponential backoff, and a batch that keeps failing for another reason
is split so that only the records that really fail go to the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

import orjson

from detectors.errors import StoreUnavailable
from detectors.events import Topic
from stream.codec import DeadLetter, Decoded, SourceRecord
from stream.metrics import Metrics
from stream.pipeline import BatchResult, Incomplete, OutputRecord, Pipeline
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
        await self.handle_mixed([(topic, r) for r in records])

    async def handle_mixed(
        self,
        items: Sequence[tuple[Topic, SourceRecord]],
        decoded: Sequence[Decoded | DeadLetter] | None = None,
        incomplete: Incomplete | None = None,
    ) -> None:
        """The same for a batch that may mix input topics (in the order given);
        `decoded`, when the caller already decoded them, one per item;
        `incomplete`, per item, the stalled topics it is judged without."""
        if not items:
            return
        started = time.perf_counter()
        name = items[0][1].topic  # labels the batch-level metrics
        for record_topic, n in Counter(r.topic for _, r in items).items():
            self._metrics.events_consumed.labels(record_topic).inc(n)
        failures = 0
        backoff = 0.1
        while True:
            try:
                result = await self._pipeline.process_mixed(
                    items, self._now_ms(), decoded, incomplete
                )
                await self._publish_until_done(name, result.outputs)
                break
            except StoreUnavailable as exc:
                self._store_down(name, exc, backoff)
            except BatchAbandoned:
                raise
            except Exception:
                failures += 1
                log.exception("batch of %d from %s failed (attempt %d)", len(items), name, failures)
                self._metrics.batch_retries.labels(name, "error").inc()
                if failures >= NON_TRANSIENT_ATTEMPTS:
                    result = await self._one_by_one(items, incomplete)
                    break
            await self._pause(backoff)
            backoff = min(backoff * 2, self._settings.retry_max_backoff_s)
        self._store_up()
        self._record(result)
        now = self._clock()
        for _, record in items:
            if record.timestamp_ms > 0:
                latency = max(now - record.timestamp_ms / 1000, 0.0)
                self._metrics.event_to_decision.labels(record.topic).observe(latency)
            self.positions[(record.topic, record.partition)] = (record.offset, record.timestamp_ms)
        self._metrics.batch_seconds.labels(name).observe(time.perf_counter() - started)
        for record_topic in {r.topic for _, r in items}:
            self._metrics.last_processed.labels(record_topic).set(now)

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

    async def _one_by_one(
        self, items: Sequence[tuple[Topic, SourceRecord]], incomplete: Incomplete | None
    ) -> BatchResult:
        """Isolate the records that fail on their own; dead-letter just those."""
        merged = BatchResult()
        for i, (topic, record) in enumerate(items):
            stalled = [incomplete[i]] if incomplete else None
            backoff = 0.1
            while True:
                try:
                    result = await self._pipeline.process_mixed(
                        [(topic, record)], self._now_ms(), None, stalled
                    )
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
            _merge(merged, result)
        return merged

    def _record(self, result: BatchResult) -> None:
        m = self._metrics
        judged: Counter[str] = Counter()
        for (name, status), n in result.statuses.items():
            m.events_processed.labels(name, status.value).inc(n)
            judged[name] += n
        for name, valid in result.valid_by_topic.items():
            if valid > judged[name]:
                m.events_processed.labels(name, "no_rule").inc(valid - judged[name])
        for letter in result.dead_letters:
            m.dead_letters.labels(letter.record.topic, letter.kind).inc()
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
        for rule in result.degraded:
            m.decisions_degraded.labels(rule.rule_id).inc()
        for name, n in result.late_by_topic.items():
            m.late_values.labels(name).inc(n)


def _merge(into: BatchResult, result: BatchResult) -> None:
    into.outputs += result.outputs
    into.valid += result.valid
    into.dead_letters += result.dead_letters
    for key, n in result.statuses.items():
        into.statuses[key] = into.statuses.get(key, 0) + n
    for name, n in result.valid_by_topic.items():
        into.valid_by_topic[name] = into.valid_by_topic.get(name, 0) + n
    for rule_id, n in result.rule_failures.items():
        into.rule_failures[rule_id] = into.rule_failures.get(rule_id, 0) + n
    into.alerts_new += result.alerts_new
    into.alerts_reemitted += result.alerts_reemitted
    into.freezes += result.freezes
    into.late_values += result.late_values
    for name, n in result.late_by_topic.items():
        into.late_by_topic[name] = into.late_by_topic.get(name, 0) + n
    into.degraded += result.degraded
