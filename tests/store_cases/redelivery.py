"""Redelivery and duplicates, on either store backend: an event counts once
per event id whatever comes back, in whatever order, and in whatever
batches (one duplicate guard per script call, one check per event)."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.engine import AggregateRequest, Observation
from detectors.events import Topic
from detectors.rules_entities import EntityType
from stream.store.base import EventObservations, EventRequests, EventStatus, EventStore
from tests.store_cases.backends import Stores
from tests.store_cases.requests import event_requests
from tests.store_cases.store import BUCKET, CONFIG, DST, FIRST, SUM, T0

MERCHANT_COUNT = AggregateSpec(
    AggregateKind.COUNT,
    frozenset({Topic.ORDERS}),
    (EntityType.MERCHANT,),
    None,
    10 * BUCKET,
    BUCKET,
)
SPECS = (SUM, DST, FIRST, MERCHANT_COUNT)
NEW, DUP = EventStatus.NEW, EventStatus.DUPLICATE


def order(i: int, user: str = "u", merchant: str = "m", ms: int | None = None) -> EventRequests:
    """Event e<i>: a user's sum, distinct device and first sighting, and its
    merchant's count (two entities, so two units per event)."""
    reqs = [
        AggregateRequest(SUM, (user,), i + 1),
        AggregateRequest(DST, (user,), f"d{i % 3}"),
        AggregateRequest(FIRST, (user,), 1),
        AggregateRequest(MERCHANT_COUNT, (merchant,), 1),
    ]
    return event_requests(f"e{i}", T0 + (ms if ms is not None else i * 100), reqs, "EUR")


def reading(user: str = "u", merchant: str = "m", ms: int = T0 + 2_000) -> EventRequests:
    reqs = [AggregateRequest(s, (user,), None) for s in (SUM, DST, FIRST)]
    reqs.append(AggregateRequest(MERCHANT_COUNT, (merchant,), None))
    return event_requests("reader", ms, reqs, "EUR")


async def apply_in(
    store: EventStore, events: Sequence[EventRequests], size: int
) -> list[EventStatus]:
    out: list[EventObservations] = []
    for i in range(0, len(events), size):
        out += await store.apply(events[i : i + size])
    return [o.status for o in out]


async def values(store: EventStore, *readers: EventRequests) -> list[dict[str, Observation]]:
    return [(await store.apply([r]))[0].values for r in readers or (reading(),)]


class RedeliveryCases:
    async def clean(
        self, stores: Stores, events: Sequence[EventRequests]
    ) -> list[dict[str, Observation]]:
        async with stores.scratch(stores.settings(), CONFIG) as store:
            assert set(await apply_in(store, events, 50)) == {NEW}
            return await values(store)

    async def test_a_batch_redelivered_after_a_crash_midway_counts_once(
        self, stores: Stores
    ) -> None:
        events = [order(i) for i in range(10)]
        async with stores.scratch(stores.settings(), CONFIG) as store:
            assert await apply_in(store, events[:5], 5) == [NEW] * 5  # then the worker dies
            assert await apply_in(store, events, 3) == [DUP] * 5 + [NEW] * 5
            assert await values(store) == await self.clean(stores, events)

    async def test_a_partial_redelivery_among_new_events(self, stores: Stores) -> None:
        events = [order(i) for i in range(8)]
        async with stores.scratch(stores.settings(), CONFIG) as store:
            await apply_in(store, events[:6], 6)
            again = [events[3], events[6], events[4], events[7]]
            assert await apply_in(store, again, 4) == [DUP, NEW, DUP, NEW]
            assert await values(store) == await self.clean(stores, events)

    async def test_a_redelivery_reordered_across_partitions(self, stores: Stores) -> None:
        """Two partitions (two users, one merchant) interleaved one way, then
        redelivered interleaved another way: nothing counts twice."""
        p0 = [order(i, user="u") for i in range(0, 10, 2)]
        p1 = [order(i, user="v") for i in range(1, 10, 2)]
        first = [e for pair in zip(p0, p1, strict=True) for e in pair]
        second = p1[2:] + p0 + p1[:2]
        readers = (reading("u"), reading("v"))
        async with stores.scratch(stores.settings(), CONFIG) as store:
            await apply_in(store, first, 3)
            before = await values(store, *readers)
            assert await apply_in(store, second, 4) == [DUP] * 10
            assert await values(store, *readers) == before
        async with stores.scratch(stores.settings(), CONFIG) as clean:
            await apply_in(clean, p0 + p1, 10)
            assert await values(clean, *readers) == before

    async def test_a_producer_duplicate_at_a_new_offset_counts_once(self, stores: Stores) -> None:
        """The same event id again, in the same batch or a later one."""
        e0, e1 = order(0), order(1)
        async with stores.scratch(stores.settings(), CONFIG) as store:
            assert await apply_in(store, [e0, e1, e0], 3) == [NEW, NEW, DUP]
            assert await apply_in(store, [order(2), e1], 2) == [NEW, DUP]
            assert await values(store) == await self.clean(stores, [e0, e1, order(2)])

    async def test_events_read_once_in_order_are_all_new(self, stores: Stores) -> None:
        """A backtest or replay (no offsets, each record once): every event is
        new, whatever the batch size, and the values do not depend on it."""
        events = [order(i, user=f"u{i % 3}", merchant=f"m{i % 2}") for i in range(12)]
        readers = [reading(f"u{i}", f"m{i % 2}") for i in range(3)]
        seen = []
        for size in (1, 5, 12):
            async with stores.scratch(stores.settings(), CONFIG) as store:
                assert await apply_in(store, events, size) == [NEW] * 12
                seen.append(await values(store, *readers))
        assert seen[0] == seen[1] == seen[2]

    async def test_the_horizon_is_judged_against_the_newest_event_of_any_entity(
        self, stores: Stores
    ) -> None:
        """One guard holds every event, so an event more than the horizon older
        than the newest event applied anywhere is too old, even for an entity
        that has seen nothing newer."""
        later = CONFIG.dedup_horizon_ms + BUCKET
        async with stores.scratch(stores.settings(), CONFIG) as store:
            (new,) = await store.apply([order(1, user="v", merchant="n", ms=later)])
            (old,) = await store.apply([order(0, user="u", merchant="m", ms=0)])
            assert (new.status, old.status) == (NEW, EventStatus.TOO_OLD)
            ((reader,),) = [await store.apply([reading("u", ms=T0)])]
            assert reader.values[SUM.agg_id].value == 0
