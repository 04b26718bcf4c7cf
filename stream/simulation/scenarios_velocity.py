"""Velocity frauds (many orders from one account, card or IP in little
time) and brushing (fake small orders from fresh accounts at one merchant).

Each function injects one instance into the world and returns its footprint.
"""

from __future__ import annotations

import random
from dataclasses import replace

from detectors.events import Order
from detectors.rules_entities import EntityType
from stream.simulation.model import HOUR_MS, MINUTE_MS, IdKind
from stream.simulation.trace import Footprint, Trace
from stream.simulation.traffic import open_storefront, run_storefront
from stream.simulation.world import World, late_day

__all__ = ["bot_ip_burst", "brushing", "card_testing_burst", "shared_card_accounts"]


def card_testing_burst(world: World, rng: random.Random, instance: int) -> Footprint:
    """One fresh account tries 12-15 stolen cards with tiny orders in ~6 minutes."""
    cfg = world.cfg
    day = late_day(cfg, rng)
    tester = world.account(rng, day)
    merchant = world.population.popular_merchant(rng)
    tries = rng.randint(12, 15)
    start = cfg.at(day, rng.uniform(0.5, 22.5))
    step = 6 * MINUTE_MS // tries
    orders = []
    for i in range(tries):
        buyer = replace(tester.at_home(), payment=world.ids.new(IdKind.CARD))
        at = start + i * step + rng.randrange(step // 2)
        orders.append(world.ledger.order(rng, buyer, merchant, at, rng.randrange(100, 501)))
    trace = Trace()
    user = trace.account(tester, ip=True)
    trace.cover(orders)
    return trace.footprint(
        [user],
        f"{tries} orders of 1.00-5.00 in about 6 minutes from one new account at one "
        "merchant, each paid with a different card (card testing).",
    )


def shared_card_accounts(world: World, rng: random.Random, instance: int) -> Footprint:
    """Six new accounts pay with the same card within a few hours."""
    cfg = world.cfg
    day = late_day(cfg, rng)
    card, ip = world.ids.new(IdKind.CARD), world.ids.ip()
    at = cfg.at(day, rng.uniform(9, 18))
    trace = Trace()
    orders = []
    for _ in range(6):
        account = world.account(rng, day, ip=ip, payment=card)
        trace.account(account, ip=True)
        at += rng.randrange(10 * MINUTE_MS, 35 * MINUTE_MS)
        for k in range(rng.randint(1, 2)):
            merchant = world.population.popular_merchant(rng)
            later = at + k * rng.randrange(20 * MINUTE_MS, 50 * MINUTE_MS)
            orders.append(world.order(rng, account.at_home(), merchant, later))
    payment = trace.add(EntityType.PAYMENT, card)[0]
    trace.cover(orders)
    return trace.footprint(
        [payment],
        f"One card pays {len(orders)} orders for 6 new accounts within a few hours.",
    )


def bot_ip_burst(world: World, rng: random.Random, instance: int) -> Footprint:
    """60-72 orders within 50 minutes from ~20 scripted accounts behind one IP."""
    cfg = world.cfg
    day = late_day(cfg, rng)
    ip = world.ids.ip()
    accounts = [world.account(rng, day, ip=ip) for _ in range(rng.randint(18, 22))]
    count = rng.randint(62, 72)
    start = cfg.at(day, rng.uniform(8, 22))
    times = sorted(start + rng.randrange(50 * MINUTE_MS) for _ in range(count))
    orders = [
        world.order(
            rng,
            accounts[i % len(accounts)].at_home(),
            world.population.popular_merchant(rng),
            at,
        )
        for i, at in enumerate(times)
    ]
    trace = Trace()
    for account in accounts:
        trace.account(account)
    ip_ref = trace.add(EntityType.IP, ip)[0]
    trace.cover(orders)
    return trace.footprint(
        [ip_ref],
        f"{count} orders in 50 minutes from {len(accounts)} new accounts behind one IP "
        "at many merchants (bot traffic).",
    )


def brushing(world: World, rng: random.Random, instance: int) -> Footprint:
    """A quiet merchant gets 12 tiny orders from new accounts on two IPs in 3 hours."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 8)
    run_storefront(world, rng, shop, 8)
    day = late_day(cfg, rng)
    ips = (world.ids.ip(), world.ids.ip())
    on_first_ip = rng.randint(9, 10)
    start = cfg.at(day, rng.uniform(10, 17))
    trace = Trace()
    orders: list[Order] = []
    for i in range(12):
        account = world.account(rng, day, ip=ips[0] if i < on_first_ip else ips[1])
        trace.account(account)
        at = start + rng.randrange(3 * HOUR_MS)
        amount = rng.randrange(100, 301)
        orders.append(world.ledger.order(rng, account.at_home(), shop.merchant, at, amount))
    merchant = trace.merchant(shop.merchant)
    trace.add(EntityType.IP, *ips)
    trace.cover(orders)
    return trace.footprint(
        [merchant],
        f"12 new accounts ({on_first_ip} on one IP, the rest on another) each place one "
        "1.00-3.00 order at one merchant within 3 hours (fake orders for ratings).",
    )
