"""The Redis watchdog (stream.watchdog): the store is started however long
Redis takes, and a lost state is counted and logged, never raised."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from stream.errors import StoreLayoutMismatch
from stream.metrics import Metrics
from stream.watchdog import FIRST_BACKOFF_S, StoreWatchdog


class FakeStore:
    def __init__(self, refusals: int = 0, intact: bool = True, error: Exception | None = None):
        self.refusals = refusals
        self.intact = intact
        self.starts = 0
        self.error = error or ConnectionError("connection refused")

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.refusals:
            raise self.error

    async def check_epoch(self) -> bool:
        return self.intact


def watchdog(store: FakeStore, waits: list[float]) -> tuple[StoreWatchdog, Metrics]:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    fake: Any = store
    metrics = Metrics()
    return StoreWatchdog(fake, metrics, max_backoff_s=0.5, sleep=sleep), metrics


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def test_the_store_starts_once_redis_answers() -> None:
    waits: list[float] = []
    store = FakeStore(refusals=3)
    dog, metrics = watchdog(store, waits)
    assert not dog.started.is_set()
    await dog.start()
    assert store.starts == 4 and dog.started.is_set()
    assert waits == [FIRST_BACKOFF_S, FIRST_BACKOFF_S * 2, 0.5]
    assert sample(metrics, "fraud_store_up") == 1


async def test_a_lost_state_is_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore(intact=False)
    dog, metrics = watchdog(store, [])
    await dog.check_epoch()  # not started yet: nothing checked
    assert sample(metrics, "fraud_store_wipes_total") == 0
    await dog.start()
    with caplog.at_level(logging.ERROR, logger="stream.watchdog"):
        await dog.check_epoch()
    assert sample(metrics, "fraud_store_wipes_total") == 1
    assert "fraudstream replay" in caplog.text


async def test_state_of_another_secret_is_refused_until_it_matches(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Nothing is applied on state keyed otherwise: the store does not count as
    started (agents wait for it), the reason is logged and kept for /readyz,
    and the worker goes on once the namespace matches (an operator fixed it)."""
    waits: list[float] = []
    mismatch = StoreLayoutMismatch("fs", "2:aaaa", "2:bbbb")
    store = FakeStore(refusals=2, error=mismatch)
    dog, metrics = watchdog(store, waits)
    refusals: list[str | None] = []

    async def record(seconds: float) -> None:
        refusals.append(dog.refusal)
        waits.append(seconds)

    dog._sleep = record
    with caplog.at_level(logging.ERROR, logger="stream.watchdog"):
        await dog.start()
    assert refusals == [str(mismatch), str(mismatch)]
    assert "FRAUD_KEY_HASH_SECRET" in caplog.text and "fraudstream replay" in caplog.text
    assert dog.started.is_set() and dog.refusal is None
    assert sample(metrics, "fraud_store_up") == 1
