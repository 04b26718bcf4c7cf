"""Store requests and pipeline batches built by hand, as tests need them."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.engine import AggregateRequest, group_requests
from detectors.events import Topic
from stream.codec import SourceRecord
from stream.pipeline import BatchResult, Pipeline
from stream.store.base import EventRequests


def event_requests(
    event_id: str,
    event_ms: int,
    requests: Sequence[AggregateRequest],
    currency: str | None = None,
) -> EventRequests:
    """One event's loose per-aggregate requests, grouped per entity as the plan does."""
    return EventRequests(event_id, event_ms, group_requests(requests), currency)


async def process(
    pipeline: Pipeline, topic: Topic, records: Sequence[SourceRecord], now_ms: int
) -> BatchResult:
    """A batch read from one input topic."""
    return await pipeline.process_mixed([(topic, r) for r in records], now_ms)
