"""Retrying an async step with capped exponential backoff.

A worker never gives up on Kafka or Redis by itself: a broker restart or a
Redis failover must cost latency, not records. What differs between the
callers is which failures they retry and what they log, so that decision is
the caller's `on_failure`; the waiting is here, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Backoff", "OnFailure", "Sleep", "retry"]

T = TypeVar("T")

# Called with a failure and the delay before the next attempt; raising
# (the failure itself or another exception) stops the retries.
OnFailure = Callable[[Exception, float], None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of `first_s`, then doubling up to `max_s`: quick retries for a
    blip, and no tight loop hammering a service that is down for minutes."""

    first_s: float
    max_s: float

    def delays(self) -> Iterator[float]:
        delay = self.first_s
        while True:
            yield delay
            delay = min(delay * 2, self.max_s)


async def retry(
    attempt: Callable[[], Awaitable[T]],
    backoff: Backoff,
    on_failure: OnFailure,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """The result of the first `attempt` that succeeds. Only `Exception`s
    are retried: a cancellation always goes through. `sleep` is where a
    caller checks for a stop between attempts (and tests skip the wait)."""
    delays = backoff.delays()
    while True:
        delay = next(delays)
        try:
            return await attempt()
        except Exception as exc:
            on_failure(exc, delay)
        await sleep(delay)
