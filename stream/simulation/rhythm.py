"""When people order: the daily rhythm of a food marketplace (UTC clock).

Lunch and dinner peaks carry three quarters of the day; nights are nearly
empty. Windowed rules see realistic hourly peaks only if the background has
them, so the look-alikes are judged against real peaks, not a flat average.
"""

from __future__ import annotations

import itertools
import math
import random

from stream.simulation.model import DAY_MS, HOUR_MS, MINUTE_MS

__all__ = ["around", "awake", "poisson", "time_of_day_ms"]

# (weight, first minute, end minute) of the day. The day ends at 23:58 so an
# order plus its voucher redemption a few seconds later stays on its day.
_SEGMENTS: tuple[tuple[float, int, int], ...] = (
    (0.02, 0, 7 * 60),  # night
    (0.08, 7 * 60, 11 * 60 + 30),  # breakfast and morning
    (0.36, 11 * 60 + 30, 13 * 60 + 30),  # lunch peak
    (0.11, 13 * 60 + 30, 18 * 60),  # afternoon
    (0.38, 18 * 60, 21 * 60),  # dinner peak
    (0.05, 21 * 60, 23 * 60 + 58),  # late evening
)
_BOUNDS = tuple((start, end) for _, start, end in _SEGMENTS)
_CUMULATIVE = tuple(itertools.accumulate(weight for weight, _, _ in _SEGMENTS))


def time_of_day_ms(rng: random.Random) -> int:
    """Milliseconds after midnight for one ordinary order."""
    start, end = rng.choices(_BOUNDS, cum_weights=_CUMULATIVE)[0]
    return rng.randrange(start * MINUTE_MS, end * MINUTE_MS)


def poisson(rng: random.Random, mean: float) -> int:
    """Orders in one day for a user with this mean (Knuth; means here are small)."""
    if mean <= 0:
        return 0
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def around(rng: random.Random, mean: float, spread: float = 0.1) -> int:
    """A steady daily volume: `mean` give or take `spread` (a fraction), never negative."""
    return max(0, round(rng.gauss(mean, mean * spread)))


def awake(rng: random.Random, at_ms: int) -> int:
    """`at_ms`, or the next morning (07:00-09:00) when it falls before 07:00.

    Refunds are asked for and handled by people who are awake. It also keeps
    refunds out of the hours just before the 03:00 payout run, when they
    would briefly push a merchant's balance below zero in any rule that
    compares orders, refunds and payouts.
    """
    time_of_day = at_ms % DAY_MS
    if time_of_day >= 7 * HOUR_MS:
        return at_ms
    return at_ms - time_of_day + 7 * HOUR_MS + rng.randrange(2 * HOUR_MS)
