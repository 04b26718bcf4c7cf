"""The one retry helper (stream.retry): capped exponential backoff, the
caller decides what to retry, a cancellation is never retried."""

from __future__ import annotations

import asyncio
from itertools import islice

import pytest

from stream.retry import Backoff, retry


class Sleeps:
    """Records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Flaky:
    """Fails `failures` times with `exc`, then returns "done"."""

    def __init__(self, failures: int, exc: Exception | None = None) -> None:
        self.failures = failures
        self.exc = exc or ConnectionError("down")
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "done"


def test_delays_double_up_to_the_cap() -> None:
    assert list(islice(Backoff(0.1, 0.5).delays(), 6)) == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]
    # A cap below the first delay still starts with the first delay.
    assert list(islice(Backoff(0.2, 0.1).delays(), 3)) == [0.2, 0.1, 0.1]


async def test_retries_until_success_waiting_the_backoff_in_between() -> None:
    sleeps, attempt = Sleeps(), Flaky(4)
    seen: list[tuple[str, float]] = []
    result = await retry(
        attempt, Backoff(0.1, 0.3), lambda exc, delay: seen.append((str(exc), delay)), sleeps
    )
    assert result == "done" and attempt.calls == 5
    assert sleeps.waits == [0.1, 0.2, 0.3, 0.3]
    assert seen == [("down", 0.1), ("down", 0.2), ("down", 0.3), ("down", 0.3)]


async def test_a_first_success_neither_fails_nor_waits() -> None:
    sleeps = Sleeps()

    def never(exc: Exception, delay: float) -> None:
        raise AssertionError("no failure expected")

    assert await retry(Flaky(0), Backoff(1.0, 5.0), never, sleeps) == "done"
    assert sleeps.waits == []


async def test_on_failure_raising_stops_at_once() -> None:
    sleeps, attempt = Sleeps(), Flaky(10, ValueError("bad record"))

    def give_up_on_the_second(exc: Exception, delay: float) -> None:
        if attempt.calls == 2:
            raise exc

    with pytest.raises(ValueError, match="bad record"):
        await retry(attempt, Backoff(0.1, 1.0), give_up_on_the_second, sleeps)
    assert attempt.calls == 2 and sleeps.waits == [0.1]  # no wait after giving up


async def test_a_cancellation_is_never_retried() -> None:
    sleeps, failures = Sleeps(), []
    attempt = Flaky(1)

    async def cancelled() -> str:
        await attempt()  # fails the first time...
        raise asyncio.CancelledError  # ...but a cancellation goes straight through

    with pytest.raises(asyncio.CancelledError):
        await retry(cancelled, Backoff(0.1, 1.0), lambda exc, d: failures.append(exc), sleeps)
    assert len(failures) == 1 and attempt.calls == 2


async def test_a_stop_raised_by_sleep_ends_the_retries() -> None:
    class Stop(Exception):
        pass

    async def stop(seconds: float) -> None:
        raise Stop

    attempt = Flaky(5)
    with pytest.raises(Stop):
        await retry(attempt, Backoff(0.1, 1.0), lambda exc, d: None, stop)
    assert attempt.calls == 1
