"""Legitimate look-alikes: honest behaviour that resembles a fraud pattern and
must not be frozen. Each stays clearly on the safe side of the line the
fraud it resembles crosses (three family members, not five farm accounts;
a day at 3x, not 6x; a new bank account paid exactly what was earned).

Each function injects one instance into the world and returns its footprint,
whose entities are the legitimate ones a freeze would wrongly hit.
"""

from __future__ import annotations

import random

from detectors.events import Event, Order, RefundInitiator
from detectors.rules_entities import EntityType
from stream.simulation.background import organic_order
from stream.simulation.model import MINUTE_MS, Buyer, IdKind, User
from stream.simulation.trace import Footprint, Trace
from stream.simulation.traffic import open_storefront, run_storefront
from stream.simulation.world import World, late_day

__all__ = [
    "bank_account_change",
    "catering_burst",
    "chain_stores",
    "deal_hunter",
    "family_tablet",
    "first_weekly_payout",
    "grand_opening",
    "holiday_rush",
    "household_refund",
    "office_lunch",
    "regular_customer",
]


def holiday_rush(world: World, rng: random.Random, instance: int) -> Footprint:
    """A popular merchant (~2,000.00 a day) has one day at 2.5-3x, paid out as usual."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 70, price_minor=rng.randrange(2700, 3000, 10))
    holiday = max(1, cfg.days - rng.randint(2, 3))
    factor = rng.uniform(2.5, 3.0)
    orders = run_storefront(world, rng, shop, 70, busy_days={holiday: 70 * factor})
    trace = Trace()
    trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, world.ledger.destination(shop.merchant.merchant_id, holiday))
    trace.cover(o for o in orders if cfg.day_of(o.occurred_at_ms) == holiday)
    return trace.footprint(
        [],
        f"A busy merchant has a holiday at {factor:.1f}x its usual orders on day "
        f"{holiday + 1}; the next payout is exactly that day's earnings.",
    )


def family_tablet(world: World, rng: random.Random, instance: int) -> Footprint:
    """Three family accounts share a tablet and a card; each redeems 1-2 vouchers one day."""
    cfg = world.cfg
    device, card, ip = world.ids.new(IdKind.DEVICE), world.ids.new(IdKind.CARD), world.ids.ip()
    family = [world.account(rng, 0, device=device, ip=ip, payment=card) for _ in range(3)]
    favourites = world.population.merchants_sample(rng, 3)
    day = late_day(cfg, rng)
    for member in family:  # ordinary history on other days, no vouchers
        for other in rng.sample([d for d in range(cfg.days) if d != day], min(3, cfg.days - 1)):
            at = cfg.at(other, rng.uniform(11.5, 20.5))
            world.order(rng, member.at_home(), rng.choice(favourites), at)
    trace = Trace()
    orders = []
    for member in family:
        trace.account(member)
        for campaign in rng.sample(world.population.campaigns, rng.randint(1, 2)):
            at = cfg.at(day, rng.uniform(11.5, 20.5))
            voucher = world.voucher(rng, campaign)
            merchant = rng.choice(favourites)
            orders.append(world.voucher_order(rng, member.at_home(), merchant, at, voucher))
    trace.add(EntityType.PAYMENT, card)
    trace.cover(orders)
    return trace.footprint(
        [],
        f"Three family accounts share one tablet and one card; on day {day + 1} they "
        f"redeem {len(orders)} vouchers at their usual merchants.",
    )


def _history(world: World, rng: random.Random, user: User, count: int, before_day: int) -> None:
    """`count` ordinary orders on days before `before_day`, so the user is not new."""
    for _ in range(count):
        day = rng.randrange(before_day)
        at = world.cfg.at(day, rng.uniform(11.5, 20.5))
        organic_order(world, rng, user, world.population.popular_merchant(rng), at)


def office_lunch(world: World, rng: random.Random, instance: int) -> Footprint:
    """Fifteen colleagues order lunch within 30 minutes at one merchant from the office IP."""
    cfg = world.cfg
    office_ip = world.ids.ip()
    merchant = world.population.popular_merchant(rng)
    colleagues = [world.account(rng, 0) for _ in range(15)]
    day = late_day(cfg, rng, first=max(1, cfg.days - 4))
    for colleague in colleagues:
        _history(world, rng, colleague, rng.randint(2, 5), day)
    start = cfg.at(day, rng.uniform(11.75, 12.5))
    trace = Trace()
    orders: list[Order] = []
    for colleague in colleagues:
        trace.account(colleague)
        buyer = Buyer(colleague.user_id, colleague.devices[0], office_ip, colleague.payment)
        at = start + rng.randrange(30 * MINUTE_MS)
        orders.append(organic_order(world, rng, colleague, merchant, at, 0.3, buyer))
    trace.merchant(merchant)
    trace.add(EntityType.IP, office_ip)
    trace.cover(orders)
    return trace.footprint(
        [],
        f"15 colleagues with order history order lunch at one merchant within 30 minutes "
        f"on day {day + 1}, all from the office IP, ordinary amounts, some with vouchers.",
    )


def regular_customer(world: World, rng: random.Random, instance: int) -> Footprint:
    """One customer lunches at the same popular merchant every day, with a voucher."""
    cfg = world.cfg
    user = world.account(rng, 0)
    population = world.population
    merchant = population.merchants[rng.randrange(min(5, len(population.merchants)))]
    orders = [
        world.voucher_order(rng, user.at_home(), merchant, cfg.at(day, rng.uniform(11.75, 13.25)))
        for day in range(cfg.days)
    ]
    trace = Trace()
    trace.account(user)
    trace.merchant(merchant)
    trace.cover(orders)
    return trace.footprint(
        [],
        f"One customer orders lunch with a voucher at the same popular merchant every "
        f"day for {cfg.days} days, once a day.",
    )


def bank_account_change(world: World, rng: random.Random, instance: int) -> Footprint:
    """A merchant earning 5,000.00+ a day moves its payouts to a new bank account."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 130, price_minor=rng.randrange(4800, 5200, 10))
    merchant_id = shop.merchant.merchant_id
    switch = min(4, cfg.days - 1)
    old, new = world.ledger.destination(merchant_id, 0), world.ids.new(IdKind.BANK)
    world.ledger.set_destination(merchant_id, switch, new)
    orders = run_storefront(world, rng, shop, 130)
    trace = Trace()
    trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, old, new)
    trace.cover(o for o in orders if switch - 1 <= cfg.day_of(o.occurred_at_ms) <= switch)
    return trace.footprint(
        [],
        f"A merchant earning over 5,000.00 a day has its payouts go to a new bank account "
        f"from day {switch + 1}; every payout is still exactly the previous day's earnings.",
    )


def chain_stores(world: World, rng: random.Random, instance: int) -> Footprint:
    """Eight busy stores of one chain, all paid to the chain's one bank account."""
    shared = world.ids.new(IdKind.BANK)
    trace = Trace()
    orders: list[Order] = []
    price = rng.randrange(2200, 2800, 10)
    for _ in range(8):
        shop = open_storefront(world, rng, 30, price_minor=price, destination=shared)
        orders += run_storefront(world, rng, shop, 30)
        trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, shared)
    trace.cover(orders)
    return trace.footprint(
        [],
        "Eight stores of one chain (~30 orders a day each) are paid daily, each exactly "
        "what it earned, to the same bank account.",
    )


def deal_hunter(world: World, rng: random.Random, instance: int) -> Footprint:
    """One customer with a few weeks of history, on their own phone, redeems
    8-10 vouchers at 8-10 different merchants in one day: a city's offers
    collected by the customer they are for (one account, one device)."""
    cfg = world.cfg
    user = world.account(rng, 0)
    day = late_day(cfg, rng, first=max(1, cfg.days - 4))
    _history(world, rng, user, rng.randint(3, 6), day)
    count = rng.randint(8, 10)
    merchants = world.population.merchants_sample(rng, count)
    campaigns = list(world.population.campaigns)
    times = sorted(cfg.at(day, rng.uniform(9.0, 22.0)) for _ in merchants)
    orders = [
        world.voucher_order(
            rng, user.at_home(), merchant, at, world.voucher(rng, campaigns[i % len(campaigns)])
        )
        for i, (merchant, at) in enumerate(zip(merchants, times, strict=True))
    ]
    trace = Trace()
    trace.account(user)
    trace.cover(orders)
    return trace.footprint(
        [],
        f"One customer with order history redeems {count} vouchers at {count} different "
        f"merchants on day {day + 1}, on their own phone.",
    )


def grand_opening(world: World, rng: random.Random, instance: int) -> Footprint:
    """A new merchant's first days: 60 orders on the opening day, half as many
    again every day after (to ~300 a day), paid out daily as usual."""
    cfg = world.cfg
    opened = max(0, cfg.days - rng.randint(4, 5))
    shop = open_storefront(world, rng, 320, price_minor=rng.randrange(2300, 2700, 10))
    growth = rng.uniform(1.4, 1.6)
    busy = {day: 60 * growth ** (day - opened) for day in range(opened, cfg.days)}
    orders = run_storefront(world, rng, shop, 60, busy_days=busy, from_day=opened)
    trace = Trace()
    trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, world.ledger.destination(shop.merchant.merchant_id, opened))
    trace.cover(orders)
    return trace.footprint(
        [],
        f"A merchant opens on day {opened + 1} with about 60 orders and grows {growth:.1f}x "
        "a day, paid out daily exactly what it earned.",
    )


def catering_burst(world: World, rng: random.Random, instance: int) -> Footprint:
    """A small restaurant (~12 orders a day) caters a company's event: one
    long-standing customer places 3 orders of 1,200.00-1,600.00 within two
    hours; the next payout is that day's earnings, as usual."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 12, price_minor=rng.randrange(2300, 2700, 10))
    orders = run_storefront(world, rng, shop, 12)
    day = late_day(cfg, rng, first=max(1, cfg.days - 4), last=cfg.days - 2)
    client = shop.customers[0]
    start = cfg.at(day, rng.uniform(9.0, 11.0))
    catering = [
        world.ledger.order(
            rng,
            client.at_home(),
            shop.merchant,
            start + rng.randrange(120 * MINUTE_MS),
            rng.randrange(120_000, 160_001, 100),
        )
        for _ in range(3)
    ]
    trace = Trace()
    trace.merchant(shop.merchant)
    trace.account(client)
    trace.add(EntityType.PAYMENT, world.ledger.destination(shop.merchant.merchant_id, day + 1))
    trace.cover([*catering, *(o for o in orders if cfg.day_of(o.occurred_at_ms) == day)])
    return trace.footprint(
        [],
        f"A restaurant with about 12 orders a day takes 3 catering orders worth "
        f"{sum(o.amount_minor for o in catering) / 100:.2f} from one regular on day {day + 1}, "
        "paid out the next night as usual.",
    )


def household_refund(world: World, rng: random.Random, instance: int) -> Footprint:
    """A household of three accounts orders four dinners at one merchant one
    evening; the delivery goes wrong and all four are refunded the next
    morning, after the night's payout paid the merchant for them."""
    cfg = world.cfg
    shop = open_storefront(world, rng, 20)
    run_storefront(world, rng, shop, 20)
    day = late_day(cfg, rng, first=max(1, cfg.days - 4), last=cfg.days - 2)
    device, ip = world.ids.new(IdKind.DEVICE), world.ids.ip()
    household = [world.account(rng, 0, device=device, ip=ip) for _ in range(3)]
    for member in household:
        _history(world, rng, member, rng.randint(2, 4), max(day, 1))
    trace = Trace()
    events: list[Event] = []
    for k in range(4):
        member = household[k % 3]
        trace.account(member)
        at = cfg.at(day, rng.uniform(19.5, 20.5))
        placed = world.order(rng, member.at_home(), shop.merchant, at)
        when = cfg.at(day + 1, rng.uniform(8.5, 11.0))
        events += [placed, world.ledger.refund(placed, when, RefundInitiator.USER, reason="late")]
    trace.merchant(shop.merchant)
    trace.cover(events)
    return trace.footprint(
        [],
        f"A household of three orders four dinners at one merchant on day {day + 1}; "
        "all four are refunded the next morning, after the night's payout.",
    )


def first_weekly_payout(world: World, rng: random.Random, instance: int) -> Footprint:
    """A merchant opened a week before the last day, busy from the start
    (~60 orders a day), settled weekly: its first payout, on the last day,
    is the whole week's earnings, to a bank account never paid before."""
    cfg = world.cfg
    last = cfg.days - 1
    opened = max(0, last - 7)
    shop = open_storefront(world, rng, 60, price_minor=rng.randrange(2300, 2700, 10))
    merchant_id = shop.merchant.merchant_id
    world.ledger.settle_weekly(merchant_id)
    orders = run_storefront(world, rng, shop, 60, from_day=opened, until_day=last - 1)
    earned = sum(world.ledger.net_earned(merchant_id, d) for d in range(opened, last))
    destination = world.ledger.destination(merchant_id, last)
    payout = world.ledger.payout(merchant_id, cfg.at(last, 3.2), earned, destination)
    trace = Trace()
    trace.merchant(shop.merchant)
    trace.add(EntityType.PAYMENT, destination)
    trace.cover([*orders[-20:], payout])
    return trace.footprint(
        [],
        f"A merchant open since day {opened + 1} with about 60 orders a day is settled "
        f"weekly: its first payout, {earned / 100:.2f}, is the whole week's earnings.",
    )
