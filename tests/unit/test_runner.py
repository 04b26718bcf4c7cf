"""BatchRunner's retries (stream.runner on stream.retry): the store is waited
for however long it is down, a batch that keeps failing for another reason
is split so that only the failing record is dead-lettered, and a stopping
worker gives the batch up unacked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from detectors.errors import StoreUnavailable
from detectors.events import Topic
from stream.codec import DeadLetter, Incoming, SourceRecord
from stream.metrics import Metrics
from stream.pipeline import BatchResult, OutputRecord
from stream.runner import NON_TRANSIENT_ATTEMPTS, BatchAbandoned, BatchRunner
from stream.settings import Settings


def item(offset: int) -> Incoming:
    record = SourceRecord("orders", 0, offset, b"k", b"{}", 0)
    return Incoming(Topic.ORDERS, DeadLetter(record, "empty_value", "unused here"))


class FakePipeline:
    """Fails as told: `store_down` calls raise StoreUnavailable, then every
    batch holding offset `poison` raises ValueError."""

    def __init__(self, store_down: int = 0, poison: int | None = None) -> None:
        self.store_down = store_down
        self.poison = poison
        self.batches: list[list[int]] = []

    async def process_mixed(self, items: Sequence[Incoming], now_ms: int) -> BatchResult:
        offsets = [i.record.offset for i in items]
        self.batches.append(offsets)
        if self.store_down:
            self.store_down -= 1
            raise StoreUnavailable("redis", "connection refused")
        if self.poison in offsets:
            raise ValueError("cannot judge this one")
        outputs = [OutputRecord("risk-alerts", None, str(o).encode()) for o in offsets]
        return BatchResult(outputs=outputs, valid=len(offsets))


def runner(pipeline: FakePipeline, stop: bool = False) -> tuple[BatchRunner, list[OutputRecord]]:
    published: list[OutputRecord] = []

    async def publish(outputs: Sequence[OutputRecord]) -> None:
        published.extend(outputs)

    settings = Settings(retry_max_backoff_s=0.01)
    fake: Any = pipeline
    return BatchRunner(settings, fake, publish, Metrics(), should_stop=lambda: stop), published


def retries(r: BatchRunner, reason: str) -> float:
    value = r._metrics.registry.get_sample_value(
        "fraud_batch_retries_total", {"topic": "orders", "reason": reason}
    )
    return value or 0.0


async def test_a_store_outage_is_waited_out_without_dead_letters() -> None:
    pipeline = FakePipeline(store_down=3)
    r, published = runner(pipeline)
    await r.handle([item(0), item(1)])
    assert pipeline.batches == [[0, 1]] * 4
    assert [o.value for o in published] == [b"0", b"1"]
    assert r.store_healthy and retries(r, "store_unavailable") == 3
    assert r.positions[("orders", 0)] == (1, 0)


async def test_a_batch_failing_otherwise_is_split_and_only_the_culprit_dead_lettered() -> None:
    pipeline = FakePipeline(poison=1)
    r, published = runner(pipeline)
    await r.handle([item(0), item(1), item(2)])
    assert pipeline.batches == [[0, 1, 2]] * NON_TRANSIENT_ATTEMPTS + [[0], [1], [2]]
    assert retries(r, "error") == NON_TRANSIENT_ATTEMPTS
    dlq = [orjson.loads(o.value) for o in published if o.topic == "fraud-dlq"]
    assert [(d["offset"], d["error"]["kind"]) for d in dlq] == [(1, "processing_error")]
    assert [o.value for o in published if o.topic == "risk-alerts"] == [b"0", b"2"]


async def test_a_stopping_worker_gives_a_failing_batch_up() -> None:
    r, published = runner(FakePipeline(store_down=1), stop=True)
    with pytest.raises(BatchAbandoned):
        await r.handle([item(0)])
    assert published == []
