"""The state every generator works on, and the few moves scenarios share:
new accounts and merchants, voucher orders, and when in the run to act."""

from __future__ import annotations

import random
from dataclasses import dataclass

from detectors.events import Order
from stream.simulation.ledger import Ledger, Voucher
from stream.simulation.model import (
    Buyer,
    Campaign,
    IdKind,
    IdMint,
    Merchant,
    SimulationConfig,
    User,
)
from stream.simulation.population import Population, new_merchant, new_user

__all__ = ["LATE_DAYS", "VOUCHER_MARGIN_MINOR", "World", "late_day"]

LATE_DAYS = 4  # labelled scenarios happen in the run's last four days (days 5-8 of 8)
VOUCHER_MARGIN_MINOR = 300  # a voucher order costs at least its face value plus this


@dataclass(frozen=True, slots=True)
class World:
    cfg: SimulationConfig
    ids: IdMint
    ledger: Ledger
    population: Population

    def account(
        self,
        rng: random.Random,
        joined_day: int,
        *,
        device: str | None = None,
        ip: str | None = None,
        payment: str | None = None,
    ) -> User:
        """A scenario's account: one device, its own IP and payment unless given."""
        device = device or self.ids.new(IdKind.DEVICE)
        return new_user(self.ids, rng, joined_day, device=device, ip=ip, payment=payment)

    def merchant(
        self, rng: random.Random, price_minor: int | None = None, destination: str | None = None
    ) -> Merchant:
        return new_merchant(self.ids, self.ledger, rng, price_minor, destination)

    def voucher(self, rng: random.Random, campaign: Campaign | None = None) -> Voucher:
        return Voucher(campaign or self.population.campaign(rng), self.ids.new(IdKind.VOUCHER))

    def voucher_order(
        self,
        rng: random.Random,
        buyer: Buyer,
        merchant: Merchant,
        at_ms: int,
        voucher: Voucher | None = None,
        amount_minor: int | None = None,
    ) -> Order:
        """An order paid partly with a voucher (a fresh one unless given)."""
        voucher = voucher or self.voucher(rng)
        if amount_minor is None:
            floor = voucher.campaign.face_value_minor + VOUCHER_MARGIN_MINOR
            amount_minor = max(merchant.basket(rng), floor)
        return self.ledger.order(rng, buyer, merchant, at_ms, amount_minor, voucher)

    def order(self, rng: random.Random, buyer: Buyer, merchant: Merchant, at_ms: int) -> Order:
        """A plain order at the merchant's usual prices."""
        return self.ledger.order(rng, buyer, merchant, at_ms, merchant.basket(rng))


def late_day(
    cfg: SimulationConfig, rng: random.Random, first: int | None = None, last: int | None = None
) -> int:
    """A day among the run's last `LATE_DAYS` (or in [first, last]), squeezed
    into the days a short run has."""
    last = cfg.days - 1 if last is None else min(last, cfg.days - 1)
    first = max(0, cfg.days - LATE_DAYS) if first is None else first
    return rng.randint(max(0, min(first, last)), last)
