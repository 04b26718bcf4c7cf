"""The live worker's pipelined batches (stream.pipelined) decide as batch by
batch does, report batches done in submission order, go through the runner's
retry path when the store fails, and give up every later batch once one is
given up, so nothing is acked after a gap."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import orjson
import pytest

from detectors.errors import StoreUnavailable
from stream.codec import Incoming
from stream.metrics import Metrics
from stream.pipeline import BatchResult, OutputRecord, Pipeline
from stream.pipelined import PipelinedRunner
from stream.rules_loading import load_rulebook
from stream.runner import BatchAbandoned, BatchRunner
from stream.settings import Settings
from stream.simulation import SimulationConfig
from stream.store.base import EventObservations, EventRequests
from stream.store.memory_store import MemoryStore
from stream.store_wiring import store_config
from tests.integration.services import TEST_KEY_HASH_SECRET
from tests.store_cases.differential import simulated_traffic

SETTINGS = Settings(key_hash_secret=TEST_KEY_HASH_SECRET, retry_max_backoff_s=0.01)
NOW_S = 1_800_000_000.0


class FlakyStore(MemoryStore):
    """Refuses the apply calls whose numbers (from 0) are in `down`."""

    def __init__(self, down: set[int]) -> None:
        super().__init__(store_config(SETTINGS))
        self.down = down
        self.calls = 0

    async def apply(
        self, events: Sequence[EventRequests], after: asyncio.Event | None = None
    ) -> list[EventObservations]:
        if after is not None:
            await after.wait()
        call, self.calls = self.calls, self.calls + 1
        await asyncio.sleep(0.001)  # answer on a later turn, as Redis does
        if call in self.down:
            raise StoreUnavailable("redis", "connection refused")
        return await super().apply(events)


def batches() -> list[list[Incoming]]:
    traffic, _ = simulated_traffic(SimulationConfig(seed=5, scale=0.05))
    items = [Incoming.read(t, r, SETTINGS.max_event_bytes) for t, r in traffic]
    size = SETTINGS.batch_max
    return [items[i : i + size] for i in range(0, len(items), size)]


def decisions(outputs: Sequence[OutputRecord]) -> list[tuple[str, bytes | None, str]]:
    """Topic, key and the alert an output is or names (not its times)."""
    out = []
    for o in outputs:
        value = orjson.loads(o.value)
        out.append((o.topic, o.key, value.get("alert_id") or value.get("reason_alert_id")))
    return out


def rig(
    store: MemoryStore, stop: bool = False
) -> tuple[PipelinedRunner, list[OutputRecord], Pipeline]:
    published: list[OutputRecord] = []

    async def publish(outputs: Sequence[OutputRecord]) -> None:
        await asyncio.sleep(0)
        published.extend(outputs)

    pipeline = Pipeline(SETTINGS, store, load_rulebook(SETTINGS))
    runner = BatchRunner(
        SETTINGS, pipeline, publish, Metrics(), clock=lambda: NOW_S, should_stop=lambda: stop
    )
    return PipelinedRunner(runner, pipeline), published, pipeline


async def one_by_one(parts: list[list[Incoming]]) -> list[OutputRecord]:
    pipeline = Pipeline(SETTINGS, MemoryStore(store_config(SETTINGS)), load_rulebook(SETTINGS))
    outputs: list[OutputRecord] = []
    for b in parts:
        result: BatchResult = await pipeline.process_mixed(b, int(NOW_S * 1000))
        outputs += result.outputs
    return outputs


async def submit_each(
    pipelined: PipelinedRunner, parts: list[list[Incoming]], reported: list[tuple[int, bool]]
) -> None:
    """Submit every batch; each reports (its number, applied) when done."""
    for n, b in enumerate(parts):
        await pipelined.submit(b, lambda ok, n=n: reported.append((n, ok)))


async def run_all(
    pipelined: PipelinedRunner, parts: list[list[Incoming]]
) -> list[tuple[int, bool]]:
    reported: list[tuple[int, bool]] = []
    for n, b in enumerate(parts):
        await pipelined.submit(b, lambda ok, n=n: reported.append((n, ok)))
        assert len(pipelined) <= 3  # one in the store, at most two being judged
    await pipelined.drain()
    return reported


async def test_pipelined_batches_decide_as_batch_by_batch_and_finish_in_order() -> None:
    parts = batches()
    pipelined, published, _ = rig(FlakyStore(set()))
    reported = await run_all(pipelined, parts)
    assert reported == [(n, True) for n in range(len(parts))]
    expected = decisions(await one_by_one(parts))
    assert expected and decisions(published) == expected


async def test_a_store_outage_mid_stream_is_retried_and_decides_the_same() -> None:
    parts = batches()
    store = FlakyStore({2, 3, 4})  # batch 2 fails, and so does what follows it at first
    pipelined, published, _ = rig(store)
    reported = await run_all(pipelined, parts)
    assert reported == [(n, True) for n in range(len(parts))]
    assert store.calls > len(parts)
    # Redone batches are duplicates in the store, judged again: the same decisions.
    assert sorted(decisions(published)) == sorted(decisions(await one_by_one(parts)))


async def test_a_stopping_worker_gives_up_the_failing_batch_and_every_later_one() -> None:
    parts = batches()[:5]
    store = FlakyStore(set(range(1, 100)))  # down from the second call on
    pipelined, _, _ = rig(store, stop=True)
    reported: list[tuple[int, bool]] = []
    with pytest.raises(BatchAbandoned):
        await submit_each(pipelined, parts, reported)
        await pipelined.drain()
    assert reported[0] == (0, True)
    assert all(not ok for _, ok in reported[1:])
    with pytest.raises(BatchAbandoned):
        await pipelined.drain()
    late: list[bool] = []
    with pytest.raises(BatchAbandoned):
        await pipelined.submit(parts[0], late.append)
    assert late == [False]


async def test_cancel_gives_up_what_is_in_flight() -> None:
    parts = batches()[:4]
    pipelined, _, _ = rig(FlakyStore(set()))
    reported: list[tuple[int, bool]] = []
    await submit_each(pipelined, parts, reported)
    pipelined.cancel()
    await asyncio.sleep(0.05)
    assert len(pipelined) == 0
    done = dict(reported)
    assert sorted(done) == list(range(len(parts)))
    # Done in order: no batch acked after one given up.
    flags = [done[n] for n in range(len(parts))]
    assert flags == sorted(flags, reverse=True) and not flags[-1]


async def test_the_last_batch_of_a_burst_concludes_without_another_one() -> None:
    parts = batches()[:2]
    pipelined, _, _ = rig(FlakyStore(set()))
    reported: list[tuple[int, bool]] = []
    await submit_each(pipelined, parts, reported)
    for _ in range(200):
        if len(reported) == len(parts):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)  # done tasks leave the in-flight list a turn later
    assert reported == [(0, True), (1, True)] and len(pipelined) == 0
