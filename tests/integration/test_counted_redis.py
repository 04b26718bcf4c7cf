"""Counted-event rings on Redis: aggregates.lua (the same cases run on the
in-memory store in tests/unit/test_counted_memory.py)."""

from __future__ import annotations

import dataclasses

import pytest

from detectors.engine import GroupRequest
from stream.store.base import EventRequests
from stream.store.redis_store import RedisStore
from stream.store_wiring import open_store
from tests.store_cases.backends import Stores
from tests.store_cases.counted import COUNT, RING, UNLISTED_SUM, CountedCases, feed, ids
from tests.store_cases.store import SUM, T0

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


async def test_only_ringed_aggregates_hold_ring_fields(stores: Stores) -> None:
    """The ring's fields (`p`, `r<i>`) are written only on the aggregates
    that keep one: the others' hashes stay their buckets and total."""
    group = UNLISTED_SUM
    async with stores.scratch(stores.settings(), RING) as store:
        assert isinstance(store, RedisStore)
        for i in range(1, 4):
            request = GroupRequest(group, ("u1",), (1, 60))
            await store.apply([EventRequests(f"e{i}", T0 + i, [request], "EUR")])
        fields = {}
        async for key in store.client.scan_iter(match=f"{store.namespace}:*"):
            if await store.client.type(key) in (b"hash", "hash"):
                fields[_text(key)] = {_text(f) for f in await store.client.hkeys(key)}
    ringed = sorted(k for k, f in fields.items() if "p" in f)
    assert len(ringed) == 1 and ringed[0].endswith(COUNT.agg_id), fields
    plain = [f for k, f in fields.items() if SUM.agg_id in k]
    assert len(plain) == 1 and not any(f == "p" or f.startswith("r") for f in plain[0])


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
