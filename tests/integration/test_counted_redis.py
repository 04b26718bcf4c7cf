"""Counted-event rings on Redis: aggregates.lua (the same cases run on the
in-memory store in tests/unit/test_counted_memory.py)."""

from __future__ import annotations

import dataclasses

import pytest

from stream.store_wiring import open_store
from tests.store_cases.backends import Stores
from tests.store_cases.counted import COUNT, RING, CountedCases, feed, ids
from tests.store_cases.store import T0

pytestmark = pytest.mark.integration


class TestCounted(CountedCases):
    pass


async def test_a_ring_resized_between_workers_reads_in_order(stores: Stores) -> None:
    """Workers restarted with another FRAUD_COUNTED_EVENTS share the rings
    the old size wrote: the read keeps the newest by sequence number, never
    a slot the other size left empty or stale."""
    settings = stores.settings()
    got = []
    try:
        for size, events in ((4, range(1, 7)), (8, [7]), (2, [8])):
            store = open_store(settings, config=dataclasses.replace(RING, counted_events=size))
            await store.start()
            try:
                for i in events:
                    obs = await feed(store, f"e{i}", T0 + i)
                got.append(ids(obs, COUNT.agg_id))
            finally:
                await store.close()
    finally:
        store = open_store(settings)
        await store.drop_namespace()
        await store.close()
    assert got == [["e3", "e4", "e5", "e6"], ["e3", "e4", "e5", "e6", "e7"], ["e8"]]
