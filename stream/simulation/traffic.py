"""Storefronts: a scenario's own merchant with its own regular customers.

Payout and GMV scenarios need a merchant whose daily volume is exactly what
the scenario says (300.00 a day, 5,000.00 a day) whatever the run's scale.
Drawing those orders from the background users would pile many extra orders
on each user of a small run; a storefront brings its own regulars instead,
ordinary established accounts that come back every few days.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

from detectors.events import Order
from stream.simulation.background import VOUCHER_RATE, organic_order, organic_refunds
from stream.simulation.model import MINUTE_MS, Merchant, User
from stream.simulation.rhythm import around, time_of_day_ms
from stream.simulation.world import World

__all__ = [
    "REGULARS_PER_DAILY_ORDER",
    "STEADY_SPREAD",
    "Storefront",
    "open_storefront",
    "run_storefront",
    "serve",
]

REGULARS_PER_DAILY_ORDER = 2  # each regular orders here every other day or so
STEADY_SPREAD = 0.05  # day-to-day variation of a storefront's volume


@dataclass(frozen=True, slots=True)
class Storefront:
    merchant: Merchant
    customers: tuple[User, ...]


def open_storefront(
    world: World,
    rng: random.Random,
    peak_orders_per_day: float,
    price_minor: int | None = None,
    destination: str | None = None,
) -> Storefront:
    merchant = world.merchant(rng, price_minor, destination)
    size = max(5, math.ceil(peak_orders_per_day * REGULARS_PER_DAILY_ORDER))
    customers = tuple(world.account(rng, 0) for _ in range(size))
    return Storefront(merchant, customers)


def serve(
    world: World,
    rng: random.Random,
    shop: Storefront,
    day: int,
    count: int,
    voucher_rate: float = VOUCHER_RATE,
) -> list[Order]:
    """`count` ordinary orders by the shop's regulars on `day`, in the daily rhythm."""
    start = world.cfg.day_start(day)
    return [
        organic_order(
            world,
            rng,
            rng.choice(shop.customers),
            shop.merchant,
            start + time_of_day_ms(rng),
            voucher_rate,
        )
        for _ in range(count)
    ]


def run_storefront(
    world: World,
    rng: random.Random,
    shop: Storefront,
    orders_per_day: float,
    *,
    busy_days: Mapping[int, float] | None = None,
    voucher_rate: float = VOUCHER_RATE,
    until_day: int | None = None,
    from_day: int = 0,
) -> list[Order]:
    """Steady traffic (± 5 % a day) from `from_day` (the day the merchant
    opens) to `until_day` (default: the last day), `busy_days` overriding the
    mean of some days, with the usual refunds. The first order comes just
    after midnight on the opening day, so the merchant's age at any later
    time is known to the minute."""
    last = world.cfg.days - 1 if until_day is None else until_day
    first = world.order(
        rng,
        rng.choice(shop.customers).at_home(),
        shop.merchant,
        world.cfg.day_start(from_day) + rng.randrange(5 * MINUTE_MS, 45 * MINUTE_MS),
    )
    orders = [first]
    for day in range(from_day, last + 1):
        mean = (busy_days or {}).get(day, orders_per_day)
        orders += serve(world, rng, shop, day, around(rng, mean, STEADY_SPREAD), voucher_rate)
    organic_refunds(world, rng, orders)
    return orders
