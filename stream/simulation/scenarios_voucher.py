"""Voucher abuse (farms, leaks, repeat redeemers, device hopping) and
collusion (a merchant and buyers farming subsidies together).

Each function injects one instance into the world and returns its footprint.
Farm accounts redeem at ordinary merchants: those merchants are victims of
the pattern, not part of it, and stay out of the labels.
"""

from __future__ import annotations

import random

from detectors.events import Order
from detectors.rules_entities import EntityType
from stream.simulation.ledger import Voucher
from stream.simulation.model import HOUR_MS, MINUTE_MS, IdKind
from stream.simulation.trace import Footprint, Trace
from stream.simulation.traffic import open_storefront, run_storefront
from stream.simulation.world import World, late_day

__all__ = [
    "campaign_leak",
    "campaign_repeat_redeemer",
    "collusion_pair",
    "device_farm",
    "device_hopping",
    "self_dealing",
]


def device_farm(world: World, rng: random.Random, instance: int) -> Footprint:
    """8-10 new accounts on one device each redeem a voucher within a day."""
    cfg = world.cfg
    day = late_day(cfg, rng)
    device, ip = world.ids.new(IdKind.DEVICE), world.ids.ip()
    accounts = [world.account(rng, day, device=device, ip=ip) for _ in range(rng.randint(8, 10))]
    merchants = world.population.merchants_sample(rng, len(accounts))
    start = cfg.at(day, rng.uniform(8, 12))
    trace = Trace()
    orders = []
    for account, merchant in zip(accounts, merchants, strict=False):
        trace.account(account, ip=True)
        at = start + rng.randrange(10 * HOUR_MS)
        orders.append(world.voucher_order(rng, account.at_home(), merchant, at))
    device_ref = trace.add(EntityType.DEVICE, device)[0]
    trace.cover(orders)
    return trace.footprint(
        [device_ref],
        f"{len(accounts)} new accounts on one device each redeem a welcome-style voucher "
        "at a different ordinary merchant within 10 hours (account farm).",
    )


def campaign_leak(world: World, rng: random.Random, instance: int) -> Footprint:
    """A running campaign's code leaks: 210-240 redemptions in 45 minutes on the last day."""
    cfg = world.cfg
    campaigns = world.population.campaigns
    campaign = campaigns[(instance - 1) % len(campaigns)]  # one leak per campaign
    code = Voucher(campaign, world.ids.new(IdKind.VOUCHER))
    day = cfg.days - 1
    count = rng.randint(210, 240)
    accounts = [world.account(rng, day) for _ in range(round(count * 0.8))]
    start = cfg.at(day, rng.uniform(12, 21))
    trace = Trace()
    orders = []
    for i in range(count):
        account = accounts[i % len(accounts)]
        at = start + rng.randrange(45 * MINUTE_MS)
        merchant = world.population.popular_merchant(rng)
        orders.append(world.voucher_order(rng, account.at_home(), merchant, at, code))
    campaign_ref = trace.add(EntityType.CAMPAIGN, campaign.campaign_id)[0]
    trace.add(EntityType.VOUCHER, code.voucher_id)
    for account in accounts:
        trace.account(account)
    trace.cover(orders)
    return trace.footprint(
        [campaign_ref],
        f"One code of an existing campaign is posted online: {count} redemptions in 45 "
        f"minutes by {len(accounts)} new accounts at many merchants.",
    )


def campaign_repeat_redeemer(world: World, rng: random.Random, instance: int) -> Footprint:
    """One account redeems the same campaign 5 times in a day, at 5 merchants."""
    cfg = world.cfg
    day = late_day(cfg, rng)
    user = world.account(rng, day)
    campaign = world.population.campaign(rng)
    merchants = world.population.merchants_sample(rng, 5)
    times = sorted(cfg.at(day, rng.uniform(9, 22)) for _ in merchants)
    orders = [
        world.voucher_order(rng, user.at_home(), merchant, at, world.voucher(rng, campaign))
        for merchant, at in zip(merchants, times, strict=True)
    ]
    trace = Trace()
    user_ref = trace.account(user)
    trace.cover(orders)
    return trace.footprint(
        [user_ref],
        "One account redeems five vouchers of the same campaign in one day, each at a "
        "different merchant (a once-per-user offer exploited).",
    )


def collusion_pair(world: World, rng: random.Random, instance: int) -> Footprint:
    """A shell merchant and 3 buyers: 6-8 subsidised orders per buyer per day, 2 days."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 1)
    run_storefront(world, rng, shop, 0.6, voucher_rate=0.0)
    day = late_day(cfg, rng, last=cfg.days - 2)
    # Three buyers (the brief allows 2-3): with three, the merchant's redemptions
    # per redeeming user are judged too (that rule wants at least 3 users).
    buyers = [world.account(rng, day) for _ in range(3)]
    # The richest campaigns: subsidy closest to face value.
    rich = sorted(world.population.campaigns, key=lambda c: c.subsidy_minor / c.face_value_minor)
    orders: list[Order] = []
    for d in (day, day + 1):
        for buyer in buyers:
            for _ in range(rng.randint(6, 8)):
                voucher = world.voucher(rng, rng.choice(rich[-3:]))
                amount = voucher.campaign.face_value_minor + rng.randrange(0, 150)
                at = cfg.at(d, rng.uniform(9, 22))
                orders.append(
                    world.voucher_order(rng, buyer.at_home(), shop.merchant, at, voucher, amount)
                )
    trace = Trace()
    merchant = trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, world.ledger.destination(shop.merchant.merchant_id, day))
    for buyer in buyers:
        trace.account(buyer)
    trace.cover(orders)
    return trace.footprint(
        [merchant],
        f"A merchant with almost no real customers and {len(buyers)} accounts place "
        f"{len(orders)} voucher orders worth little more than the voucher over two days.",
    )


def self_dealing(world: World, rng: random.Random, instance: int) -> Footprint:
    """A merchant's owner buys at his own shop with vouchers, paying from the
    bank account the shop's payouts go to."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 12)
    run_storefront(world, rng, shop, 12)
    own_account = world.ledger.destination(shop.merchant.merchant_id, 0)
    first = min(2, cfg.days - 1)
    owner = world.account(rng, first, payment=own_account)
    orders = [
        world.voucher_order(
            rng,
            owner.at_home(),
            shop.merchant,
            cfg.at(rng.randint(first, cfg.days - 1), rng.uniform(10, 21)),
        )
        for _ in range(rng.randint(4, 6))
    ]
    trace = Trace()
    merchant = trace.merchant(shop.merchant)
    trace.account(owner, payment=True)
    trace.cover(orders)
    return trace.footprint(
        [merchant],
        f"From day {first + 1} one account places {len(orders)} voucher orders at a "
        "merchant, paying from the bank account that merchant's payouts go to.",
    )


def device_hopping(world: World, rng: random.Random, instance: int) -> Footprint:
    """2-3 new accounts on one device redeem vouchers at 8-9 different
    merchants within 6 hours: the device tours merchants for its accounts
    (one account alone doing this is a deal hunter, a look-alike)."""
    cfg = world.cfg
    day = late_day(cfg, rng)
    device, ip = world.ids.new(IdKind.DEVICE), world.ids.ip()
    accounts = [world.account(rng, day, device=device, ip=ip) for _ in range(rng.randint(2, 3))]
    merchants = world.population.merchants_sample(rng, rng.randint(8, 9))
    campaigns = list(world.population.campaigns)
    rng.shuffle(campaigns)
    start = cfg.at(day, rng.uniform(10, 16))
    times = sorted(start + rng.randrange(6 * HOUR_MS) for _ in merchants)
    orders = [
        world.voucher_order(
            rng,
            accounts[i % len(accounts)].at_home(),
            merchant,
            at,
            world.voucher(rng, campaigns[i % len(campaigns)]),
        )
        for i, (merchant, at) in enumerate(zip(merchants, times, strict=True))
    ]
    trace = Trace()
    for account in accounts:
        trace.account(account, ip=True)
    device_ref = trace.add(EntityType.DEVICE, device)[0]
    trace.cover(orders)
    return trace.footprint(
        [device_ref],
        f"{len(accounts)} new accounts on one device redeem vouchers at {len(merchants)} "
        "different merchants within 6 hours.",
    )
