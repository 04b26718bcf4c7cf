"""The in-memory store and Redis agree on the simulator's traffic: through
the same pipeline, the same decisions (alert ids, freezes) and the same
observation for every event (status, value and window of every aggregate).
The counts are printed (-s); tests/unit/test_differential.py shows the
comparison catches a store with a wrong window."""

from __future__ import annotations

import pytest

from stream.simulation import SimulationConfig
from stream.store.base import EventStatus
from tests.integration.services import Services
from tests.store_cases.backends import Backend, Stores
from tests.store_cases.differential import (
    differences,
    disordered,
    run_traffic,
    simulated_traffic,
)


@pytest.mark.parametrize(
    ("config", "shuffle"),
    [
        pytest.param(SimulationConfig(seed=1, scale=1.0), False, id="seed1-scale1"),
        # Late events, events beyond the lateness, duplicates and redeliveries.
        pytest.param(SimulationConfig(seed=7, scale=1.0), True, id="seed7-disordered"),
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
    if shuffle:  # the disorder reached the store
        assert memory.statuses().keys() == set(EventStatus)
    assert differences(memory, redis) == []
