"""Store requests and pipeline batches built by hand, as tests need them."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.engine import AggregateRequest, group_requests
from detectors.events import Topic
from stream.codec import Incoming, SourceRecord
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
    """A batch of raw records from one input topic, decoded here."""
    max_bytes = pipeline.settings.max_event_bytes
    return await pipeline.process_mixed(
        [Incoming.read(topic, r, max_bytes) for r in records], now_ms
    )
