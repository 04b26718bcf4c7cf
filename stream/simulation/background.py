"""Ordinary traffic: users ordering at their favourite merchants in the daily
rhythm, some with a voucher, a few asking for a refund.

Background stays clearly below every threshold the default rules use: at
most one voucher per campaign per user and day, at most two refunds per
user, one account per device and per payment instrument. Look-alikes and
frauds are the only things near or over a line.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from detectors.events import Order, RefundInitiator
from stream.simulation.model import DAY_MS, MINUTE_MS, Buyer, Merchant, User
from stream.simulation.rhythm import awake, poisson, time_of_day_ms
from stream.simulation.world import World

__all__ = [
    "FAVOURITE_SHARE",
    "FULL_REFUND_SHARE",
    "MAX_REFUNDS_PER_USER",
    "PLATFORM_REASONS",
    "REFUND_RATE",
    "USER_REASONS",
    "USER_REFUND_SHARE",
    "VOUCHER_RATE",
    "background_orders",
    "organic_order",
    "organic_refunds",
]

VOUCHER_RATE = 0.15
REFUND_RATE = 0.025
FAVOURITE_SHARE = 0.8
MAX_REFUNDS_PER_USER = 2
USER_REFUND_SHARE = 0.8  # the rest are initiated by the platform (support)
FULL_REFUND_SHARE = 0.7
USER_REASONS = ("item_missing", "cold_food", "wrong_order", "late_delivery")
PLATFORM_REASONS = ("courier_no_show", "store_closed", "goodwill")


def background_orders(world: World, rng: random.Random) -> list[Order]:
    """Each user's orders, day by day from the day they joined."""
    cfg, population = world.cfg, world.population
    orders = []
    for user in population.users:
        daily_mean = user.weekly_orders / 7
        for day in range(user.joined_day, cfg.days):
            for _ in range(poisson(rng, daily_mean)):
                if user.favourites and rng.random() < FAVOURITE_SHARE:
                    merchant = rng.choice(user.favourites)
                else:
                    merchant = population.popular_merchant(rng)
                at = cfg.day_start(day) + time_of_day_ms(rng)
                orders.append(organic_order(world, rng, user, merchant, at))
    return orders


def organic_order(
    world: World,
    rng: random.Random,
    user: User,
    merchant: Merchant,
    at_ms: int,
    voucher_rate: float = VOUCHER_RATE,
    buyer: Buyer | None = None,
) -> Order:
    """One ordinary order (from `buyer`, default: the user's usual device and
    IP); with probability `voucher_rate` it uses a voucher of a campaign the
    user has not used yet that day."""
    buyer = buyer or user.buyer(rng, world.population.mobile_ips)
    if rng.random() < voucher_rate:
        voucher = world.voucher(rng)
        day = world.cfg.day_of(at_ms)
        if not world.ledger.voucher_used(user.user_id, voucher.campaign.campaign_id, day):
            return world.voucher_order(rng, buyer, merchant, at_ms, voucher)
    return world.order(rng, buyer, merchant, at_ms)


def organic_refunds(world: World, rng: random.Random, orders: Iterable[Order]) -> None:
    """Refund about `REFUND_RATE` of `orders` within two days, never more than
    `MAX_REFUNDS_PER_USER` per user, never after the run ends, and never so
    much that the merchant's day turns into a loss: a loss-making day gets no
    payout and is not carried over, so it would leave the merchant's balance
    of orders - refunds - payouts negative, which is a fraud signal."""
    ledger, end = world.ledger, world.cfg.end_ms
    for order in orders:
        if rng.random() >= REFUND_RATE:
            continue
        if ledger.refund_count(order.user_id) >= MAX_REFUNDS_PER_USER:
            continue
        at = awake(rng, order.occurred_at_ms + rng.randrange(10 * MINUTE_MS, 2 * DAY_MS))
        if at >= end:
            continue
        if rng.random() < USER_REFUND_SHARE:
            initiator, reason = RefundInitiator.USER, rng.choice(USER_REASONS)
        else:
            initiator, reason = RefundInitiator.PLATFORM, rng.choice(PLATFORM_REASONS)
        amount = order.amount_minor
        if rng.random() >= FULL_REFUND_SHARE:
            amount = rng.randint(amount // 4, amount)
        if ledger.net_earned(order.merchant_id, world.cfg.day_of(at)) < amount:
            continue  # a day of net losses is never paid back: keep balances honest
        ledger.refund(order, at, initiator, amount, reason)
