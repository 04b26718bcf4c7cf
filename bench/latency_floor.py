"""The latency floor of the latency phase: a plain aiokafka consumer reads the
records the bench offers, as they arrive, and does nothing else. What it
measures is Kafka, the producer and the machine's load, without a worker:
the worker's percentiles mean something only next to it, since on a shared
2-vCPU machine this floor's own p99 moves from tens to hundreds of
milliseconds within minutes."""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import AIOKafkaConsumer

__all__ = ["LatencyFloor", "percentile"]


def percentile(q: float, sorted_values: list[float]) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not sorted_values:
        return float("nan")
    rank = max(int(q * len(sorted_values) + 0.999999) - 1, 0)
    return sorted_values[min(rank, len(sorted_values) - 1)]


class LatencyFloor:
    """Start before offering, stop after: record age (now minus Kafka timestamp)
    on arrival, for every record produced in between."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self._bootstrap, self._topics = bootstrap, topics
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ages_s: list[float] = []

    async def start(self) -> None:
        """Assigned and positioned at the end of every partition before
        returning, so no offered record is missed or read from the past."""
        consumer = AIOKafkaConsumer(
            *self._topics,
            bootstrap_servers=self._bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="latest",
        )
        await consumer.start()  # no group: every partition is assigned to it
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)  # resolves "latest" now, before any offer
        self._consumer = consumer
        self._task = asyncio.create_task(self._watch(consumer))

    async def _watch(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batches.values():
                self.ages_s.extend(now - r.timestamp / 1000 for r in records)

    async def stop(self, expected: int, timeout_s: float = 30.0) -> tuple[float, float, float]:
        """p50, p95, p99 in ms once `expected` records were read (or the
        timeout passed)."""
        deadline = time.monotonic() + timeout_s
        while len(self.ages_s) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        ages = sorted(self.ages_s)
        return tuple(round(percentile(q, ages) * 1000, 1) for q in (0.5, 0.95, 0.99))  # type: ignore[return-value]

