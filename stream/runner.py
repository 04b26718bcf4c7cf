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
from functools import partial

from detectors.errors import StoreUnavailable
from stream.codec import DeadLetter, Incoming, SourceRecord
from stream.metrics import Metrics
from stream.pipeline import BatchResult, OutputRecord, Pipeline, dead_letter_output
from stream.retry import Backoff, OnFailure, retry
from stream.settings import Settings

__all__ = ["FIRST_BACKOFF_S", "NON_TRANSIENT_ATTEMPTS", "BatchAbandoned", "BatchRunner", "Publish"]

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[OutputRecord]], Awaitable[None]]


class BatchAbandoned(Exception):
    """The worker is stopping while a batch still fails: give it up *unacked*
    (it will be redelivered to whoever owns the partition next)."""


class _Isolate(Exception):
    """A batch kept failing for another reason than the store: split it."""


NON_TRANSIENT_ATTEMPTS = 3
FIRST_BACKOFF_S = 0.1


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
        self._backoff = Backoff(FIRST_BACKOFF_S, settings.retry_max_backoff_s)
        self.store_healthy = True
        # (topic, partition) → (last processed offset, its Kafka timestamp ms): for lag.
        self.positions: dict[tuple[str, int], tuple[int, int]] = {}

    async def handle(self, items: Sequence[Incoming]) -> None:
        """Returns only once every record is applied and its outputs are
        queued. The batch may mix input topics (applied in the order given)."""
        if not items:
            return
        started = self.begin(items)
        await self.retried(items, started)

    def begin(self, items: Sequence[Incoming]) -> float:
        """Count a batch in; returns its start time for `finish`."""
        for record_topic, n in Counter(i.record.topic for i in items).items():
            self._metrics.events_consumed.labels(record_topic).inc(n)
        return time.perf_counter()

    async def retried(self, items: Sequence[Incoming], started: float) -> None:
        """Apply and publish a counted-in batch with every retry: in place
        while the store is down, split when it keeps failing otherwise."""
        name = items[0].record.topic  # labels the batch-level metrics
        try:
            result = await retry(
                partial(self._apply, name, items),
                self._backoff,
                self._on_batch_failure(name, len(items)),
                self._pause,
            )
        except _Isolate:
            result = await self._one_by_one(items)
        self.finish(items, result, started)

    def finish(self, items: Sequence[Incoming], result: BatchResult, started: float) -> None:
        """A batch is applied and its outputs queued: record it."""
        self._store_up()
        self._record(result)
        now = self._clock()
        for item in items:
            record = item.record
            if record.timestamp_ms > 0:
                latency = max(now - record.timestamp_ms / 1000, 0.0)
                self._metrics.event_to_decision.labels(record.topic).observe(latency)
            self.positions[(record.topic, record.partition)] = (record.offset, record.timestamp_ms)
        name = items[0].record.topic
        self._metrics.batch_seconds.labels(name).observe(time.perf_counter() - started)
        for record_topic in {i.record.topic for i in items}:
            self._metrics.last_processed.labels(record_topic).set(now)

    async def _apply(self, name: str, items: Sequence[Incoming]) -> BatchResult:
        result = await self._pipeline.process_mixed(items, self.now_ms())
        await self.publish_until_done(name, result.outputs)
        return result

    def _on_batch_failure(self, name: str, size: int) -> OnFailure:
        """Retry while the store is down, however long; retry any other
        failure NON_TRANSIENT_ATTEMPTS times, then split the batch."""
        failures = 0

        def on_failure(exc: Exception, delay: float) -> None:
            nonlocal failures
            if isinstance(exc, StoreUnavailable):
                self._store_down(name, exc, delay)
                return
            if isinstance(exc, BatchAbandoned):
                raise exc
            failures += 1
            log.exception("batch of %d from %s failed (attempt %d)", size, name, failures)
            self._metrics.batch_retries.labels(name, "error").inc()
            if failures >= NON_TRANSIENT_ATTEMPTS:
                raise _Isolate from exc

        return on_failure

    async def publish_until_done(self, name: str, outputs: Sequence[OutputRecord]) -> None:
        """A publish failure (broker down, timeout) is never the records' fault:
        retry in place, never dead-letter because of it, never drop it."""

        def on_failure(exc: Exception, delay: float) -> None:
            if isinstance(exc, BatchAbandoned):
                raise exc
            log.warning("publishing %d records failed (%s); retrying", len(outputs), exc)
            self._metrics.batch_retries.labels(name, "publish").inc()

        await retry(partial(self._publish, outputs), self._backoff, on_failure, self._pause)

    async def _pause(self, seconds: float) -> None:
        if self._should_stop():
            raise BatchAbandoned
        await asyncio.sleep(seconds)
        if self._should_stop():
            raise BatchAbandoned

    def now_ms(self) -> int:
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

    async def _one_by_one(self, items: Sequence[Incoming]) -> BatchResult:
        """Isolate the records that fail on their own; dead-letter just those."""
        merged = BatchResult()
        for item in items:
            record = item.record
            try:
                result = await retry(
                    partial(self._apply, record.topic, [item]),
                    self._backoff,
                    self._on_store_failure(record.topic),
                    self._pause,
                )
            except BatchAbandoned:
                raise
            except Exception as exc:
                log.exception(
                    "record %s/%d/%d fails alone: dead-lettering",
                    record.topic,
                    record.partition,
                    record.offset,
                )
                result = await self._dead_letter(record, exc)
            _merge(merged, result)
        return merged

    def _on_store_failure(self, name: str) -> OnFailure:
        """Retry while the store is down; any other failure is the record's."""

        def on_failure(exc: Exception, delay: float) -> None:
            if not isinstance(exc, StoreUnavailable):
                raise exc
            self._store_down(name, exc, delay)

        return on_failure

    async def _dead_letter(self, record: SourceRecord, exc: Exception) -> BatchResult:
        letter = DeadLetter(record, "processing_error", f"{type(exc).__name__}: {exc}")
        output = dead_letter_output(letter, self._settings, self.now_ms())
        await self.publish_until_done(record.topic, [output])
        return BatchResult(dead_letters=[letter], outputs=[output])

    def _record(self, result: BatchResult) -> None:
        self._record_inputs(result)
        self._record_decisions(result)

    def _record_inputs(self, result: BatchResult) -> None:
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
        for name, n in result.late_by_topic.items():
            m.late_values.labels(name).inc(n)
        for name, n in result.settled.items():
            m.events_settled.labels(name).inc(n)

    def _record_decisions(self, result: BatchResult) -> None:
        m = self._metrics
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
        for suppression, n in result.suppressed.items():
            m.enforcement_suppressed.labels(suppression.value).inc(n)
        for silence, n in result.silenced.items():
            m.control_silenced.labels(silence.value).inc(n)
        m.block_list_alerts.inc(result.block_list_alerts)


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
    for suppression, n in result.suppressed.items():
        into.suppressed[suppression] = into.suppressed.get(suppression, 0) + n
    for silence, n in result.silenced.items():
        into.silenced[silence] = into.silenced.get(silence, 0) + n
    into.block_list_alerts += result.block_list_alerts
    for name, n in result.settled.items():
        into.settled[name] = into.settled.get(name, 0) + n
