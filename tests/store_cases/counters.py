"""Counter readings on either backend (stream.store.counters): the value of
each aggregate as of the entity's newest event, per currency for sums,
None for what the store never saw, and a read changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.engine import AggregateRequest
from detectors.events import Topic
from detectors.rules_entities import EntityType
from stream.store.base import EventObservations, EventStore
from stream.store.counters import CounterQuery
from tests.store_cases.backends import Stores
from tests.store_cases.requests import event_requests
from tests.store_cases.store import BUCKET, CONFIG, DST, FIRST, SUM, T0, N

COUNT = AggregateSpec(
    AggregateKind.COUNT, frozenset({Topic.ORDERS}), (EntityType.USER,), None, N * BUCKET, BUCKET
)
SPECS = (COUNT, SUM, DST, FIRST)
USER = (EntityType.USER,)


async def feed(
    store: EventStore, event_id: str, ms: int, amount: int, device: str, currency: str = "EUR"
) -> EventObservations:
    ids = ("u1",)
    reqs = [
        AggregateRequest(COUNT, ids, 1),
        AggregateRequest(SUM, ids, amount),
        AggregateRequest(DST, ids, device),
        AggregateRequest(FIRST, ids, 1),
    ]
    return (await store.apply([event_requests(event_id, ms, reqs, currency)]))[0]


class CounterCases:
    @pytest.fixture
    async def store(self, stores: Stores) -> AsyncIterator[EventStore]:
        async with stores.scratch(stores.settings(), CONFIG) as store:
            yield store

    async def test_values_as_of_the_newest_event(self, store: EventStore) -> None:
        await feed(store, "e1", T0, 100, "d1")
        await feed(store, "e2", T0 + 2 * BUCKET, 50, "d2")
        await feed(store, "e3", T0 + 3 * BUCKET, 7, "d1", currency="USD")
        # Twelve buckets on, the first two events have left the window (buckets
        # 3..12); the USD one has not, and counts, but in USD's sum alone.
        late = T0 + 12 * BUCKET + 5
        await feed(store, "e4", late, 1, "d3")
        got = await store.counters().read(CounterQuery(USER, ("u1",), SPECS, ["EUR", "USD", "GBP"]))
        end = (late // BUCKET + 1) * BUCKET
        assert [(r.spec.agg_id, r.currency, r.value, r.end_ms) for r in got] == [
            (COUNT.agg_id, None, 2, end),
            (SUM.agg_id, "EUR", 1, end),
            (SUM.agg_id, "USD", 7, (T0 // BUCKET + 4) * BUCKET),  # USD's own newest event
            (SUM.agg_id, "GBP", None, None),
            (DST.agg_id, None, 2, late + 1),  # d1 (e3) and d3
            (FIRST.agg_id, None, T0, None),
        ]

    async def test_values_inside_the_window(self, store: EventStore) -> None:
        for i, device in enumerate(["d1", "d2", "d1", "d3"]):
            await feed(store, f"e{i}", T0 + i * BUCKET, 10 * (i + 1), device)
        got = await store.counters().read(CounterQuery(USER, ("u1",), SPECS, ["EUR"]))
        assert [r.value for r in got] == [4, 100, 3, T0]

    async def test_an_entity_the_store_never_saw(self, store: EventStore) -> None:
        await feed(store, "e1", T0, 100, "d1")
        got = await store.counters().read(CounterQuery(USER, ("u2",), SPECS, ["EUR"]))
        assert [(r.value, r.end_ms) for r in got] == [(None, None)] * 4

    async def test_a_read_changes_nothing(self, stores: Stores) -> None:
        """The same events, read between them on one store only: a late
        event afterwards is observed alike (a read that slid the window to
        its own time would make it too late)."""
        observed = []
        for read in (False, True):
            async with stores.scratch(stores.settings(), CONFIG) as store:
                await feed(store, "e1", T0 + 20 * BUCKET, 5, "d1")
                if read:
                    await store.counters().read(CounterQuery(USER, ("u1",), SPECS, ["EUR"]))
                observed.append(await feed(store, "e2", T0 + 15 * BUCKET, 5, "d2"))
        assert observed[0] == observed[1]
        assert observed[0].values[COUNT.agg_id].value == 2
