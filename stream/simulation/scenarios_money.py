"""Refund abuse, payout risk and bust-out: frauds that move money after the
meal, so they need a merchant with a history (a storefront) or a buyer with
several days of orders.

Each function injects one instance into the world and returns its footprint.
Customers refunded by a dishonest merchant are innocent: they are chosen
among customers without any other refund, and stay out of the labels.
"""

from __future__ import annotations

import random

from detectors.events import Order, Refund, RefundInitiator
from detectors.rules_entities import EntityType
from stream.simulation.background import USER_REASONS
from stream.simulation.model import DAY_MS, HOUR_MS, MINUTE_MS, IdKind
from stream.simulation.rhythm import awake
from stream.simulation.trace import Footprint, Trace
from stream.simulation.traffic import Storefront, open_storefront, run_storefront, serve
from stream.simulation.world import World, late_day

__all__ = [
    "MIN_TAKEOVER_PAYOUT_MINOR",
    "account_takeover",
    "bust_out",
    "merchant_refund_spike",
    "payout_drain",
    "refund_after_settlement",
    "refund_ring",
    "serial_refunder",
    "young_bust_out",
]

MIN_TAKEOVER_PAYOUT_MINOR = 500_000


def serial_refunder(world: World, rng: random.Random, instance: int) -> Footprint:
    """One account: 8 orders over 5 days at 8 merchants, 6 of them refunded."""
    cfg = world.cfg
    first = rng.randint(max(0, cfg.days - 6), max(0, cfg.days - 5))
    user = world.account(rng, first)
    days = sorted(min(first + i % 5, cfg.days - 1) for i in range(8))
    merchants = world.population.merchants_sample(rng, 8)
    orders = [
        world.order(rng, user.at_home(), merchant, cfg.at(day, rng.uniform(11, 21)))
        for merchant, day in zip(merchants, days, strict=False)
    ]
    refunds = []
    for order in sorted(rng.sample(orders, 6), key=lambda o: o.occurred_at_ms):
        at = awake(rng, order.occurred_at_ms + rng.randrange(2 * HOUR_MS, 30 * HOUR_MS))
        at = min(at, cfg.end_ms - rng.randrange(5 * MINUTE_MS, 60 * MINUTE_MS))
        reason = rng.choice(USER_REASONS)
        refunds.append(world.ledger.refund(order, at, RefundInitiator.USER, reason=reason))
    trace = Trace()
    user_ref = trace.account(user)
    trace.cover([*orders, *refunds])
    return trace.footprint(
        [user_ref],
        f"One account orders {len(orders)} times over 5 days at different merchants and "
        f"has {len(refunds)} of them refunded.",
    )


def _innocent(world: World, orders: list[Order], count: int) -> list[Order]:
    """Up to `count` of `orders`, from distinct customers who had no refund yet."""
    chosen: dict[str, Order] = {}
    for order in orders:
        if world.ledger.refund_count(order.user_id) == 0:
            chosen.setdefault(order.user_id, order)
    return list(chosen.values())[:count]


def refund_after_settlement(world: World, rng: random.Random, instance: int) -> Footprint:
    """A merchant refunds 4 of its own orders, 2-5 days old and long paid out, in one day."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 15)
    orders = run_storefront(world, rng, shop, 15)
    day = late_day(cfg, rng, first=max(1, cfg.days - 4))
    at = cfg.at(day, rng.uniform(9, 15))
    eligible = [o for o in orders if 2 * DAY_MS <= at - o.occurred_at_ms <= 5 * DAY_MS]
    rng.shuffle(eligible)
    if len(_innocent(world, eligible, 4)) < 4:  # a short run: the oldest orders there are
        eligible = sorted(
            (o for o in orders if o.occurred_at_ms < at), key=lambda o: o.occurred_at_ms
        )
    refunds = []
    for order in _innocent(world, eligible, 4):
        refunds.append(world.ledger.refund(order, at, RefundInitiator.MERCHANT, reason="dispute"))
        at += rng.randrange(20 * MINUTE_MS, 90 * MINUTE_MS)
    trace = Trace()
    merchant = trace.merchant(shop.merchant)
    trace.cover(refunds)
    return trace.footprint(
        [merchant],
        f"A merchant issues {len(refunds)} merchant-initiated refunds in one day on its "
        "own orders that are 2-5 days old and already paid out.",
    )


def refund_ring(world: World, rng: random.Random, instance: int) -> Footprint:
    """Four buyers in league with a merchant (~20 orders a day) each order
    twice one day, and ask for both refunds 3-4 days later, long after the
    payout paid the merchant for them: the platform refunds from its pocket."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 20)
    run_storefront(world, rng, shop, 20)
    day = max(0, cfg.days - 5)
    ring = [world.account(rng, 0) for _ in range(4)]
    trace = Trace()
    events: list[Order | Refund] = []
    for k, buyer in enumerate(ring):
        trace.account(buyer)
        for _ in range(2):
            at = cfg.at(day, rng.uniform(11.5, 20.5))
            placed = world.ledger.order(
                rng, buyer.at_home(), shop.merchant, at, rng.randrange(4000, 7001, 10)
            )
            when = cfg.at(min(day + 3 + k % 2, cfg.days - 1), rng.uniform(9.0, 18.0))
            refund = world.ledger.refund(
                placed, when, RefundInitiator.USER, reason=rng.choice(USER_REASONS)
            )
            events += [placed, refund]
    merchant = trace.merchant(shop.merchant)
    trace.cover(events)
    return trace.footprint(
        [merchant],
        f"Four buyers order twice at one merchant on day {day + 1} and have all 8 orders "
        "refunded 3-4 days later, after the merchant was paid for them.",
    )


def merchant_refund_spike(world: World, rng: random.Random, instance: int) -> Footprint:
    """A merchant with ~30 orders a day refunds 12 of one day's orders that evening."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 30)
    day = late_day(cfg, rng)
    orders = run_storefront(world, rng, shop, 30)
    start = cfg.at(day, rng.uniform(21, 21.5))
    todays = [o for o in orders if cfg.at(day, 0) <= o.occurred_at_ms < start - HOUR_MS]
    while len(_innocent(world, todays, 12)) < 12:  # a slow day: more customers came
        todays += serve(world, rng, shop, day, 1)
        todays = [o for o in todays if o.occurred_at_ms < start - HOUR_MS]
    refunds, at = [], start
    for order in _innocent(world, todays, 12):
        refunds.append(world.ledger.refund(order, at, RefundInitiator.MERCHANT, reason="other"))
        at += rng.randrange(2 * MINUTE_MS, 5 * MINUTE_MS)
    trace = Trace()
    merchant = trace.merchant(shop.merchant)
    trace.cover(refunds)
    return trace.footprint(
        [merchant],
        f"A merchant with about 30 orders a day refunds 12 of day {day + 1}'s orders to "
        "their buyers within an hour that evening (merchant-initiated).",
    )


def account_takeover(world: World, rng: random.Random, instance: int) -> Footprint:
    """An established merchant's account is taken over: on the last day a payout
    of ~3x its daily earnings (at least 5,000.00) goes to a new bank account."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 40, price_minor=rng.randrange(4200, 4800, 10))
    run_storefront(world, rng, shop, 40)
    day = cfg.days - 1
    merchant_id = shop.merchant.merchant_id
    earned = world.ledger.net_earned(merchant_id, day - 1)
    amount = max(MIN_TAKEOVER_PAYOUT_MINOR + rng.randrange(0, 20_000, 100), 3 * earned)
    attacker = world.ids.new(IdKind.BANK)
    payout = world.ledger.payout(merchant_id, cfg.at(day, rng.uniform(13, 19)), amount, attacker)
    trace = Trace()
    merchant = trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, attacker)
    trace.cover([payout])
    return trace.footprint(
        [merchant],
        f"Merchant paid daily for {day} days; on day {day + 1} a payout of "
        f"{amount / 100:.2f} ({amount / max(earned, 1):.1f}x a day's earnings) goes to a "
        "bank account never used before.",
    )


def payout_drain(world: World, rng: random.Random, instance: int) -> Footprint:
    """Four payouts within a few hours to the usual account, far above earnings."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 20)
    run_storefront(world, rng, shop, 20)
    day = late_day(cfg, rng, first=max(1, cfg.days - 4))
    merchant_id = shop.merchant.merchant_id
    daily = max(world.ledger.net_earned(merchant_id, day - 1), 30_000)
    destination = world.ledger.destination(merchant_id, day)
    at = cfg.at(day, rng.uniform(9, 13))
    payouts = []
    for _ in range(4):
        amount = round(daily * rng.uniform(0.9, 1.4) / 100) * 100
        payouts.append(world.ledger.payout(merchant_id, at, amount, destination))
        at += rng.randrange(40 * MINUTE_MS, 80 * MINUTE_MS)
    trace = Trace()
    merchant = trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, destination)
    trace.cover(payouts)
    total = sum(p.amount_minor for p in payouts)
    return trace.footprint(
        [merchant],
        f"Four payouts within a few hours to the merchant's usual account, "
        f"{total / 100:.2f} in all against {daily / 100:.2f} earned the day before.",
    )


def bust_out(world: World, rng: random.Random, instance: int) -> Footprint:
    """A merchant with ~250.00 a day for a week takes ~17,500.00 on the last day
    from a crowd of new buyers, and cashes it out that night."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 10, price_minor=rng.randrange(2300, 2700, 10))
    run_storefront(world, rng, shop, 10)
    day = cfg.days - 1
    target = rng.randrange(1_700_000, 1_850_000, 100)
    return _crowd_then_cash_out(
        world, rng, shop, (day, target), f"About 250.00 a day for {day} days"
    )


def young_bust_out(world: World, rng: random.Random, instance: int) -> Footprint:
    """A merchant opened 2-4 days before the last day sells ~200.00 a day,
    then takes 40x that from a crowd of new buyers and cashes it out that
    night: a bust-out too young for a week's baseline."""
    cfg = world.cfg
    day = cfg.days - 1
    opened = max(0, day - rng.randint(2, 4))
    shop = open_storefront(world, rng, 8, price_minor=rng.randrange(2300, 2700, 10))
    run_storefront(world, rng, shop, 8, from_day=opened, until_day=day - 1)
    target = rng.randrange(800_000, 950_000, 100)
    history = f"Opened on day {opened + 1} with about 200.00 a day"
    return _crowd_then_cash_out(world, rng, shop, (day, target), history)


def _crowd_then_cash_out(
    world: World, rng: random.Random, shop: Storefront, burst: tuple[int, int], history: str
) -> Footprint:
    """Orders worth `target` from new accounts on `day` (`burst`), then a
    payout of the day's net earnings that night. The merchant is expected
    to be held; its destination and the buyers are part of the scenario."""
    cfg = world.cfg
    day, target = burst
    buyers = [world.account(rng, day) for _ in range(target // 15_000)]
    orders: list[Order] = []
    taken = 0
    while taken < target:
        at = cfg.at(day, rng.uniform(8, 20.5))
        amount = rng.randrange(3500, 6001, 10)
        orders.append(
            world.ledger.order(rng, rng.choice(buyers).at_home(), shop.merchant, at, amount)
        )
        taken += amount
    merchant_id = shop.merchant.merchant_id
    destination = world.ledger.destination(merchant_id, day)
    amount = world.ledger.net_earned(merchant_id, day)
    payout = world.ledger.payout(
        merchant_id, cfg.at(day, rng.uniform(21.5, 23.5)), amount, destination
    )
    trace = Trace()
    merchant = trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, destination)
    for buyer in buyers:
        trace.account(buyer)
    trace.cover([*orders, payout])
    return trace.footprint(
        [merchant],
        f"{history}, then {taken / 100:.2f} from new buyers on the last day, "
        "paid out the same night.",
    )
