"""Merchants along a quality spectrum, for the account-health score: good,
sloppy, deteriorating and fraudulent storefronts, each labelled with the
band its health should be in by a given time. The health test backtests
them with the shipped rules and prints the confusion table.

- good: ordinary traffic and refunds (about 2.5 % of orders, within two days);
- sloppy: about a fifth of its orders refunded within hours (cold food, a
  missing dish), a third of those by the merchant itself (out of stock);
- deteriorating: good for most of the run, then half its orders refunded;
- fraudulent: good until its fraud starts, then it refunds, in one day, a
  sixth of its orders of the past days, long paid out (the refund-ring
  money flow from the merchant's side).
"""

from __future__ import annotations

import random

from detectors.events import Order, RefundInitiator
from detectors.health_model import Band
from stream.simulation.labels import Archetype, MerchantLabel
from stream.simulation.model import HOUR_MS, MINUTE_MS
from stream.simulation.traffic import open_storefront, run_storefront
from stream.simulation.world import World

__all__ = ["run_merchants"]

ORDERS_PER_DAY = 20


def run_merchants(world: World, per_archetype: int) -> list[MerchantLabel]:
    """`per_archetype` merchants of each archetype, each on its own random stream."""
    labels = []
    for archetype in Archetype:
        for i in range(1, per_archetype + 1):
            rng = world.cfg.rng(f"merchant/{archetype.value}/{i}")
            labels.append(_ARCHETYPES[archetype](world, rng))
    return labels


def _good(world: World, rng: random.Random) -> MerchantLabel:
    shop = open_storefront(world, rng, ORDERS_PER_DAY)
    run_storefront(world, rng, shop, ORDERS_PER_DAY)
    end = world.cfg.end_ms - 1
    return MerchantLabel(shop.merchant.merchant_id, Archetype.GOOD, Band.HEALTHY, end)


def _complaints(
    world: World, rng: random.Random, orders: list[Order], share: float, by_merchant: float
) -> None:
    """Refund `share` of `orders` within hours; `by_merchant` of those by the merchant."""
    for order in orders:
        if rng.random() >= share:
            continue
        at = order.occurred_at_ms + rng.randrange(30 * MINUTE_MS, 6 * HOUR_MS)
        if at >= world.cfg.end_ms:
            continue
        who = RefundInitiator.MERCHANT if rng.random() < by_merchant else RefundInitiator.USER
        world.ledger.refund(order, at, who, reason="quality")


def _sloppy(world: World, rng: random.Random) -> MerchantLabel:
    shop = open_storefront(world, rng, ORDERS_PER_DAY)
    orders = run_storefront(world, rng, shop, ORDERS_PER_DAY)
    _complaints(world, rng, orders, 0.2, 0.35)
    end = world.cfg.end_ms - 1
    return MerchantLabel(shop.merchant.merchant_id, Archetype.SLOPPY, Band.AT_RISK, end)


def _deteriorating(world: World, rng: random.Random) -> MerchantLabel:
    cfg = world.cfg
    shop = open_storefront(world, rng, ORDERS_PER_DAY)
    orders = run_storefront(world, rng, shop, ORDERS_PER_DAY)
    turn = cfg.day_start(max(1, cfg.days - 3))
    _complaints(world, rng, [o for o in orders if o.occurred_at_ms >= turn], 0.5, 0.4)
    end = cfg.end_ms - 1
    return MerchantLabel(shop.merchant.merchant_id, Archetype.DETERIORATING, Band.AT_RISK, end)


def _fraudulent(world: World, rng: random.Random) -> MerchantLabel:
    cfg = world.cfg
    shop = open_storefront(world, rng, ORDERS_PER_DAY)
    orders = run_storefront(world, rng, shop, ORDERS_PER_DAY)
    start = cfg.at(max(2, cfg.days - 3), rng.uniform(9.0, 11.0))
    _cash_back(world, rng, orders, start)
    return MerchantLabel(
        shop.merchant.merchant_id, Archetype.FRAUDULENT, Band.CRITICAL, start + 24 * HOUR_MS, start
    )


def _cash_back(world: World, rng: random.Random, orders: list[Order], start: int) -> None:
    """From `start`, within eight hours, refund a sixth of the orders placed
    2-6 days before, by the merchant (already paid out: the platform pays)."""
    old = [o for o in orders if 2 * 24 * HOUR_MS <= start - o.occurred_at_ms <= 6 * 24 * HOUR_MS]
    rng.shuffle(old)
    at = start
    for order in old[: max(1, len(old) // 6 + len(orders) // 20)]:
        at += rng.randrange(5 * MINUTE_MS, 25 * MINUTE_MS)
        world.ledger.refund(order, at, RefundInitiator.MERCHANT, reason="dispute")


_ARCHETYPES = {
    Archetype.GOOD: _good,
    Archetype.SLOPPY: _sloppy,
    Archetype.DETERIORATING: _deteriorating,
    Archetype.FRAUDULENT: _fraudulent,
}
