"""The background population: merchants with their own price level and
popularity, voucher campaigns, and users with their devices, payment
instrument, home IP, ordering rate and favourite merchants.

Scenarios create their own users and merchants with the same two factories
(`new_user`, `new_merchant`), so an injected account looks like any other.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, replace

from stream.simulation.ledger import Ledger
from stream.simulation.model import (
    MOBILE_IP_OCTETS,
    Campaign,
    IdKind,
    IdMint,
    Merchant,
    SimulationConfig,
    User,
)

__all__ = [
    "BANK_PAYER_SHARE",
    "CAMPAIGNS",
    "CITIES",
    "JOIN_LATE_SHARE",
    "MERCHANTS",
    "MOBILE_IPS",
    "ORDER_RATES",
    "SECOND_DEVICE_SHARE",
    "USERS",
    "Population",
    "build_population",
    "new_merchant",
    "new_user",
]

MERCHANTS = 300
USERS = 4000
CAMPAIGNS = 8
MOBILE_IPS = 1500
CITIES = ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt")
JOIN_LATE_SHARE = 0.08
SECOND_DEVICE_SHARE = 0.10
BANK_PAYER_SHARE = 0.15
# (share of users, fewest, most orders per week): most order a few times a
# week, a heavy quarter up to twice a day.
ORDER_RATES = ((0.40, 1.0, 4.0), (0.35, 4.0, 10.0), (0.25, 10.0, 14.0))


@dataclass(frozen=True, slots=True)
class Population:
    merchants: tuple[Merchant, ...]
    merchant_weights: tuple[float, ...]  # cumulative popularity, for rng.choices
    campaigns: tuple[Campaign, ...]
    users: tuple[User, ...]
    mobile_ips: tuple[str, ...]

    def popular_merchant(self, rng: random.Random) -> Merchant:
        return rng.choices(self.merchants, cum_weights=self.merchant_weights)[0]

    def merchants_sample(self, rng: random.Random, count: int) -> list[Merchant]:
        """`count` distinct merchants, popular ones more likely (fewer if there are fewer)."""
        count = min(count, len(self.merchants))
        chosen: dict[str, Merchant] = {}
        while len(chosen) < count:
            merchant = self.popular_merchant(rng)
            chosen.setdefault(merchant.merchant_id, merchant)
        return list(chosen.values())

    def campaign(self, rng: random.Random) -> Campaign:
        return rng.choices(self.campaigns, weights=[c.weight for c in self.campaigns])[0]


def new_merchant(
    ids: IdMint,
    ledger: Ledger,
    rng: random.Random,
    price_minor: int | None = None,
    destination: str | None = None,
) -> Merchant:
    """A merchant, registered for daily payouts to its own (or the given) destination."""
    if price_minor is None:
        low, high = rng.choices(((1200, 1800), (1800, 2800), (2800, 4200)), (35, 45, 20))[0]
        price_minor = rng.randrange(low, high, 10)
    merchant = Merchant(ids.new(IdKind.MERCHANT), price_minor, rng.choice(CITIES))
    ledger.set_destination(merchant.merchant_id, 0, destination or ids.new(IdKind.BANK))
    return merchant


def new_user(
    ids: IdMint,
    rng: random.Random,
    joined_day: int,
    *,
    device: str | None = None,
    ip: str | None = None,
    payment: str | None = None,
) -> User:
    """A user with no ordering habit of its own: scenarios drive its orders."""
    devices: tuple[str, ...] = (device or ids.new(IdKind.DEVICE),)
    if device is None and rng.random() < SECOND_DEVICE_SHARE:
        devices += (ids.new(IdKind.DEVICE),)
    if payment is None:
        payment = ids.new(IdKind.BANK if rng.random() < BANK_PAYER_SHARE else IdKind.CARD)
    return User(ids.new(IdKind.USER), devices, payment, ip or ids.ip(), joined_day)


def build_population(
    cfg: SimulationConfig, ids: IdMint, ledger: Ledger, rng: random.Random
) -> Population:
    merchants = tuple(new_merchant(ids, ledger, rng) for _ in range(cfg.scaled(MERCHANTS)))
    # Zipf-like popularity: a few busy restaurants, a long tail of quiet ones.
    weights = tuple(itertools.accumulate(1 / (rank + 1) ** 0.6 for rank in range(len(merchants))))
    campaigns = tuple(_campaign(ids, rng) for _ in range(max(CAMPAIGNS, cfg.scaled(CAMPAIGNS))))
    mobile_ips = tuple(ids.ip(MOBILE_IP_OCTETS) for _ in range(cfg.scaled(MOBILE_IPS)))
    population = Population(merchants, weights, campaigns, (), mobile_ips)
    users = tuple(_background_user(cfg, ids, rng, population) for _ in range(cfg.scaled(USERS)))
    return Population(merchants, weights, campaigns, users, mobile_ips)


def _campaign(ids: IdMint, rng: random.Random) -> Campaign:
    face = rng.choice((500, 600, 750, 800, 1000))
    subsidy = rng.randrange(300, min(face, 800) + 1, 50)
    return Campaign(ids.new(IdKind.CAMPAIGN), face, subsidy, rng.uniform(0.7, 1.3))


def _background_user(
    cfg: SimulationConfig, ids: IdMint, rng: random.Random, population: Population
) -> User:
    joined = rng.randrange(1, cfg.days) if rng.random() < JOIN_LATE_SHARE else 0
    user = new_user(ids, rng, joined)
    _, low, high = rng.choices(ORDER_RATES, weights=[share for share, _, _ in ORDER_RATES])[0]
    favourites = tuple(population.merchants_sample(rng, rng.randint(2, 6)))
    return replace(user, weekly_orders=rng.uniform(low, high), favourites=favourites)
