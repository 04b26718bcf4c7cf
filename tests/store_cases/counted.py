"""The events a count or sum counted (detectors.counted), on either backend:
each key an alert can list keeps a ring of its newest counted events, read
back in the same step as the value once the value reaches the op's report
floor."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest

from detectors.counted import ReportFloor
from detectors.engine import EntityGroup, GroupRequest
from stream.store.base import EventObservations, EventRequests, EventStore
from tests.store_cases.backends import Stores
from tests.store_cases.counters import COUNT, USER
from tests.store_cases.store import BUCKET, CONFIG, SUM, T0

RING = dataclasses.replace(CONFIG, counted_events=4)
CONFIG_WITHOUT_RINGS = dataclasses.replace(CONFIG, counted_events=0)
GROUP = EntityGroup(USER, (COUNT, SUM), (ReportFloor(3), ReportFloor(0, (("EUR", 100),))))
# The same aggregates where no rule lists the sum: no floor, no ring.
UNLISTED_SUM = EntityGroup(USER, (COUNT, SUM), (ReportFloor(3), None), (True, False))


async def feed(
    store: EventStore, event_id: str, ms: int, amount: int = 10, currency: str = "EUR"
) -> EventObservations:
    request = GroupRequest(GROUP, ("u1",), (1, amount))
    return (await store.apply([EventRequests(event_id, ms, [request], currency)]))[0]


def ids(obs: EventObservations, spec_id: str) -> list[str] | None:
    found = obs.counted.get(spec_id)
    return None if found is None else [event_id for _, event_id in found]


class CountedCases:
    @pytest.fixture
    async def store(self, stores: Stores) -> AsyncIterator[EventStore]:
        async with stores.scratch(stores.settings(), RING) as store:
            yield store

    async def test_the_ring_is_read_from_the_floor_on_newest_last(self, store: EventStore) -> None:
        got = [ids(await feed(store, f"e{i}", T0 + i), COUNT.agg_id) for i in range(1, 7)]
        assert got == [
            None,
            None,
            ["e1", "e2", "e3"],
            ["e1", "e2", "e3", "e4"],
            ["e2", "e3", "e4", "e5"],  # four kept
            ["e3", "e4", "e5", "e6"],
        ]

    async def test_entries_carry_event_time(self, store: EventStore) -> None:
        for i in range(1, 4):
            last = await feed(store, f"e{i}", T0 + i * 7)
        assert last.counted[COUNT.agg_id] == ((T0 + 7, "e1"), (T0 + 14, "e2"), (T0 + 21, "e3"))

    async def test_a_redelivery_reads_without_adding(self, store: EventStore) -> None:
        for i in range(1, 5):
            await feed(store, f"e{i}", T0 + i)
        again = await feed(store, "e2", T0 + 2)
        assert ids(again, COUNT.agg_id) == ["e1", "e2", "e3", "e4"]

    async def test_a_sum_reports_at_its_currencys_floor_only(self, store: EventStore) -> None:
        first = await feed(store, "e1", T0, amount=60)
        second = await feed(store, "e2", T0 + 1, amount=60)
        yen = await feed(store, "e3", T0 + 2, amount=100_000, currency="JPY")
        zero = await feed(store, "e4", T0 + 3, amount=0)  # adds nothing, not recorded
        assert ids(first, SUM.agg_id) is None and ids(second, SUM.agg_id) == ["e1", "e2"]
        assert ids(yen, SUM.agg_id) is None  # no rule judges yen here
        assert ids(zero, SUM.agg_id) == ["e1", "e2"]

    async def test_the_ring_starts_afresh_with_the_window(self, store: EventStore) -> None:
        for i in range(1, 4):
            await feed(store, f"e{i}", T0 + i)
        later = T0 + 100 * BUCKET  # every bucket left the window and the lateness
        for i in range(4, 7):
            obs = await feed(store, f"e{i}", later + i)
        assert ids(obs, COUNT.agg_id) == ["e4", "e5", "e6"]

    async def test_no_ring_kept_none_read(self, stores: Stores) -> None:
        async with stores.scratch(stores.settings(), CONFIG_WITHOUT_RINGS) as store:
            for i in range(1, 5):
                obs = await feed(store, f"e{i}", T0 + i)
        assert obs.counted == {} and obs.values[COUNT.agg_id].value == 4

    async def test_an_aggregate_no_rule_lists_keeps_no_ring(self, store: EventStore) -> None:
        """Rings are kept only where a rule reads the aggregate as its main
        one; when a rule set starts to, the ring starts with the next event."""
        ringed = dataclasses.replace(GROUP, ringed=(True, True))
        for i, group in enumerate((UNLISTED_SUM, UNLISTED_SUM, ringed), start=1):
            request = GroupRequest(group, ("u1",), (1, 60))
            obs = (await store.apply([EventRequests(f"e{i}", T0 + i, [request], "EUR")]))[0]
        assert ids(obs, SUM.agg_id) == ["e3"]  # e1 and e2 were counted while no rule listed it
        assert ids(obs, COUNT.agg_id) == ["e1", "e2", "e3"]
