"""The differential comparison of two stores (run against Redis in
tests/integration/test_backends_agree.py) catches a wrong store: the
in-memory store against a copy of itself whose count and sum windows are
one bucket short, on the simulator's traffic."""

from __future__ import annotations

import pytest

from detectors.aggregates import AggregateSpec
from stream.settings import Settings
from stream.simulation import SimulationConfig
from stream.store.memory_state import Bucketing
from stream.store.memory_store import MemoryStore
from stream.store_wiring import store_config
from tests.integration.services import TEST_KEY_HASH_SECRET
from tests.store_cases.differential import Traffic, differences, run_traffic, simulated_traffic

SETTINGS = Settings(key_hash_secret=TEST_KEY_HASH_SECRET)


class ShortWindows(MemoryStore):
    """Deliberately wrong: every count and sum window is one bucket short."""

    def _shape(self, spec: AggregateSpec) -> Bucketing:
        right = super()._shape(spec)
        return Bucketing(right.bucket_ms, right.buckets - 1, right.late_buckets)


@pytest.fixture(scope="module")
def traffic() -> tuple[Traffic, int]:
    return simulated_traffic(SimulationConfig(seed=3, scale=0.1))


async def test_the_same_store_twice_agrees(traffic: tuple[Traffic, int]) -> None:
    one = await run_traffic(SETTINGS, MemoryStore(store_config(SETTINGS)), *traffic)
    two = await run_traffic(SETTINGS, MemoryStore(store_config(SETTINGS)), *traffic)
    print(one.counts())
    assert one.alert_ids and one.freezes  # traffic that decides something
    assert differences(one, two) == []


async def test_a_wrong_window_is_caught(traffic: tuple[Traffic, int]) -> None:
    right = await run_traffic(SETTINGS, MemoryStore(store_config(SETTINGS)), *traffic)
    wrong = await run_traffic(SETTINGS, ShortWindows(store_config(SETTINGS)), *traffic)
    found = differences(right, wrong)
    print("\n".join(found))
    assert any(d.startswith("event ") for d in found)
