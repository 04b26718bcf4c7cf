"""The in-memory store and Redis agree on the simulator's traffic: through
the same pipeline, the same decisions (alert ids, freezes) and the same
observation for every event (status, value and window of every aggregate).
The counts are printed (-s); tests/unit/test_differential.py shows the
comparison catches a store with a wrong window. And request by request: any
arrivals give the same observations from both."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.engine import AggregateRequest
from stream.simulation import SimulationConfig
from stream.store.base import EventObservations, EventRequests, EventStatus
from tests.integration.services import Services
from tests.store_cases.backends import Backend, Stores
from tests.store_cases.differential import (
    differences,
    disordered,
    run_traffic,
    simulated_traffic,
)
from tests.store_cases.requests import event_requests
from tests.store_cases.store import BUCKET, CONFIG, DST, FIRST, SUM, T0, ev


@pytest.mark.parametrize(
    ("config", "shuffle"),
    [
        pytest.param(SimulationConfig(seed=1, scale=0.5), False, id="seed1-half"),
        # Late events, events beyond the lateness, duplicates and redeliveries.
        pytest.param(
            SimulationConfig(seed=7, scale=1.0), True, id="seed7-disordered", marks=pytest.mark.soak
        ),
    ],
)
async def test_memory_and_redis_agree_on_simulated_traffic(
    services: Services, config: SimulationConfig, shuffle: bool
) -> None:
    traffic, now_ms = simulated_traffic(config)
    if shuffle:
        traffic = disordered(traffic, config.seed)
    runs = {}
    for backend in Backend:
        stores = Stores(backend, services)
        settings = stores.settings()
        async with stores.scratch(settings) as store:
            runs[backend] = await run_traffic(settings, store, traffic, now_ms)
    memory, redis = runs[Backend.MEMORY], runs[Backend.REDIS]
    print(f"\nmemory: {memory.counts()}\nredis:  {redis.counts()}")
    assert memory.alert_ids and memory.freezes
    assert any(o.counted for _, o in memory.observed)  # rings were read, and compared
    if shuffle:  # the disorder reached the store
        assert memory.statuses().keys() == set(EventStatus)
    assert differences(memory, redis) == []


arrivals_strategy = st.lists(
    st.tuples(
        # Clusters of event time far apart (beyond the lateness and the
        # duplicate horizon); within each, times on a coarse grid, so that
        # events often fall on window edges.
        st.integers(0, 2).map(lambda c: c * 2_000_000),
        st.integers(0, 30).map(lambda b: b * BUCKET),
        st.integers(0, 9),
        st.sampled_from("ab"),
        st.sampled_from(["u", "v"]),
        st.sampled_from(["EUR", "JPY"]),
        st.booleans(),  # only reads
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(arrivals_strategy, st.integers(0, 10), st.integers(1, 8))
def test_memory_and_redis_observe_alike_for_any_arrivals(
    services: Services, raw: list[tuple[int, int, int, str, str, str, bool]], dups: int, batch: int
) -> None:
    """Any arrival order, late and too-old events, duplicates, readers, two
    currencies, batches of any size: the same observation from both stores."""
    events = [read_or_feed(f"e{i}", *fields) for i, fields in enumerate(raw)]
    events += [events[i % len(events)] for i in range(dups)]
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]

    async def observe(backend: Backend) -> list[EventObservations]:
        stores = Stores(backend, services)
        async with stores.scratch(stores.settings(), CONFIG) as store:
            return [o for b in batches for o in await store.apply(b)]

    memory, redis = (asyncio.run(observe(b)) for b in Backend)
    assert memory == redis


def read_or_feed(
    event_id: str,
    cluster: int,
    offset: int,
    amount: int,
    device: str,
    user: str,
    currency: str,
    only_reads: bool,
) -> EventRequests:
    ms = T0 + cluster + offset
    if not only_reads:
        return ev(event_id, ms, amount, device, user, currency)
    reads = [AggregateRequest(spec, (user,), None) for spec in (SUM, DST, FIRST)]
    return event_requests(event_id, ms, reads, currency)
