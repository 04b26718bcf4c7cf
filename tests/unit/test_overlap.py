"""Overlapped batches (stream.overlap) decide exactly as the pipeline does
batch by batch, and hand results on in batch order."""

from __future__ import annotations

import orjson

from stream.codec import Incoming
from stream.overlap import OverlappedBatches
from stream.pipeline import BatchResult, Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.simulation import SimulationConfig
from stream.store.memory_store import MemoryStore
from stream.store_wiring import store_config
from tests.integration.services import TEST_KEY_HASH_SECRET
from tests.store_cases.differential import simulated_traffic

SETTINGS = Settings(key_hash_secret=TEST_KEY_HASH_SECRET)
# An output's topic, key and the alert it is or names (not its detection time,
# which the overlapped run takes from the clock).
Decision = tuple[str, bytes | None, str]


def decisions(result: BatchResult) -> list[Decision]:
    out = []
    for o in result.outputs:
        value = orjson.loads(o.value)
        out.append((o.topic, o.key, value.get("alert_id") or value.get("reason_alert_id")))
    return out


async def test_overlapped_batches_decide_as_batch_by_batch() -> None:
    traffic, now_ms = simulated_traffic(SimulationConfig(seed=5, scale=0.05))
    items = [Incoming.read(t, r, SETTINGS.max_event_bytes) for t, r in traffic]
    batches = [items[i : i + SETTINGS.batch_max] for i in range(0, len(items), SETTINGS.batch_max)]

    def pipeline() -> Pipeline:
        return Pipeline(SETTINGS, MemoryStore(store_config(SETTINGS)), load_rulebook(SETTINGS))

    one_by_one = pipeline()
    expected = [decisions(await one_by_one.process_mixed(b, now_ms)) for b in batches]
    handed: list[tuple[int, list[Decision]]] = []

    async def on_result(result: BatchResult, records: int) -> None:
        handed.append((records, decisions(result)))

    overlapped = OverlappedBatches(pipeline(), on_result)
    for b in batches:
        await overlapped.submit(b)
    await overlapped.drain()
    assert [n for n, _ in handed] == [len(b) for b in batches]
    assert [outputs for _, outputs in handed] == expected
    assert any(expected)
