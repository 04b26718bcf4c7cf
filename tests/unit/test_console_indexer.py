"""The indexer's bookkeeping without Kafka or a database: the lag it
reports per topic."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from console.indexer import Indexer
from console.metrics import ConsoleMetrics
from stream.settings import Settings


class _Consumer:
    def __init__(self, highwater: dict[TopicPartition, int | None]) -> None:
        self._high = highwater

    def assignment(self) -> set[TopicPartition]:
        return set(self._high)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._high[tp]


async def _never() -> Any:
    raise AssertionError("no database in this test")


def test_lag_is_the_high_watermark_minus_what_was_written_summed_per_topic() -> None:
    metrics = ConsoleMetrics()
    indexer = Indexer(Settings(), "g", _never, metrics)
    alerts = [TopicPartition("risk-alerts", p) for p in range(3)]
    control = TopicPartition("risk-control", 0)
    indexer._next = {alerts[0]: 90, alerts[1]: 10, control: 5}
    consumer = _Consumer({alerts[0]: 100, alerts[1]: 10, alerts[2]: None, control: 7})
    indexer._report_lag(consumer)  # type: ignore[arg-type]
    assert metrics.lag.labels("risk-alerts")._value.get() == 10
    assert metrics.lag.labels("risk-control")._value.get() == 2
    assert metrics.lag.labels("fund-freezes")._value.get() == 0
