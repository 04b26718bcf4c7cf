"""Every default rule fires on a minimal positive case and stays silent on the
nearest legitimate case (issue: detection catalogue). Cases are judged by
the real engine over a brute-force reference of the store (rule_harness)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from detectors.decisions import freeze_for
from detectors.events import Payout, Topic
from detectors.health_bands import BandHistory, BandLookup, no_bands
from detectors.health_model import Band
from detectors.rulebook import parse_rulebook
from detectors.rules import ActionKind, Mode
from tests.unit.catalogue_events import (
    DAY,
    HOUR,
    MIN,
    T0,
    order,
    order_id_of,
    payout,
    redemption,
    refund,
)
from tests.unit.rule_harness import Fed, judge

REPO = Path(__file__).resolve().parents[2]
BOOK = parse_rulebook((REPO / "stream/rulesets/default.yaml").read_text())
RULES = {r.rule_id: r for r in BOOK.rules}

# A case: (history fed first, events judged in order).
Case = tuple[list[Fed], list[Fed]]


def velocity_10m(n: int, spread_ms: int) -> Case:
    return [], [order(T0 + i * spread_ms // n) for i in range(n)]


def user_orders_24h(n: int) -> Case:
    return [], [order(T0 + i * 40 * MIN) for i in range(n)]


def device_orders_1h(n: int) -> Case:
    return [], [order(T0 + i * 3 * MIN, user=f"u{i % 4}", device="tab") for i in range(n)]


def card_accounts(users: int) -> Case:
    return [], [order(T0 + i * HOUR, user=f"u{i}", payment="card-shared") for i in range(users)]


def ip_orders_1h(n: int) -> Case:
    return [], [order(T0 + i * MIN, user=f"u{i}", ip="10.0.0.1") for i in range(n)]


def device_accounts_vouchers(users: int) -> Case:
    judged = [
        redemption(T0 + (2 * i + k) * 20 * MIN, user=f"u{i}", device="tab")
        for i in range(users)
        for k in range(2)
    ]
    return [], judged


def campaign_twice_a_day(times: int, gap_ms: int) -> Case:
    return [], [redemption(T0 + i * gap_ms, campaign="c-lunch") for i in range(times)]


def device_subsidy(redemptions: int, subsidy: int) -> Case:
    return [], [
        redemption(T0 + i * HOUR, user=f"u{i % 3}", device="tab", subsidy=subsidy)
        for i in range(redemptions)
    ]


def campaign_hour(per_day: int, burst: int) -> Case:
    """A campaign redeemed `per_day` times a day for six days, then `burst`
    redemptions within one hour."""
    start = T0 - 6 * DAY
    history = [
        redemption(start + i * (6 * DAY) // (6 * per_day), user=f"h{i}", campaign="c9")
        for i in range(6 * per_day)
    ]
    judged = [
        redemption(T0 + i * (HOUR // burst), user=f"b{i}", campaign="c9") for i in range(burst)
    ]
    return history, judged


def pair_redemptions(count: int, gap_ms: int) -> Case:
    return [], [redemption(T0 + i * gap_ms, merchant="m7") for i in range(count)]


def every_meal(days: int) -> Case:
    """Breakfast, lunch, a snack and dinner with a voucher at one place, daily."""
    return [], [
        redemption(T0 + d * DAY + int(hour * HOUR), merchant="m7")
        for d in range(days)
        for hour in (8, 12.5, 16, 19.5)
    ]


def captive_buyers(per_buyer: int) -> Case:
    judged = [
        redemption(T0 + (i * 3 + b) * 3 * HOUR, user=f"b{b}", merchant="m7")
        for i in range(per_buyer)
        for b in range(3)
    ]
    return [], judged


def subsidy_share(amount: int, subsidy: int) -> Case:
    history = [order(T0 + i * HOUR, user=f"u{i}", merchant="m7", amount=amount) for i in range(10)]
    judged = [
        redemption(T0 + 10 * HOUR + i * MIN, user=f"u{i}", merchant="m7", subsidy=subsidy)
        for i in range(10)
    ]
    return history, judged


def buyer_pays_from(merchant: str, voucher: str | None) -> Case:
    history = [payout(T0 - DAY, merchant="m7", dest="iban-7")]
    return history, [order(T0, merchant=merchant, payment="iban-7", voucher=voucher)]


def payout_to_buyer_account(dest: str) -> Case:
    history = [order(T0 - DAY, merchant="m7", payment="iban-7"), order(T0 - DAY, merchant="m8")]
    return history, [payout(T0, merchant="m7", dest=dest)]


def device_tour(merchants: int, accounts: int = 2, account_age_ms: int = 0) -> Case:
    """Redemptions at `merchants` merchants from one device, by `accounts`
    accounts taking turns, each first seen `account_age_ms` before the tour."""
    users = [f"u{k}" for k in range(accounts)]
    history = [order(T0 - account_age_ms, user=u) for u in users if account_age_ms]
    judged = [
        redemption(T0 + i * HOUR, user=users[i % accounts], merchant=f"m{i}", device="tab")
        for i in range(merchants)
    ]
    return history, judged


def refunds_of_orders(orders: int, refunded: int, gap_ms: int = DAY) -> Case:
    placed = [order(T0 + i * gap_ms) for i in range(orders)]
    refunds = [
        refund(T0 + orders * gap_ms + i * MIN, order_id_of(o))
        for o in placed[:refunded]
        for i in [placed.index(o)]
    ]
    return placed, refunds


def merchant_refund_day(orders: int, refunded: int) -> Case:
    placed = [order(T0 + i * 20 * MIN, user=f"u{i}", merchant="m7") for i in range(orders)]
    refunds = [
        refund(T0 + orders * 20 * MIN + i * MIN, order_id_of(o), user=f"u{i}", merchant="m7")
        for i, o in enumerate(placed[:refunded])
    ]
    return placed, refunds


def refunds_after_payout(
    order_age_ms: int, orders: int = 3, amount: int = 1500, users: int = 3, paid: bool = True
) -> Case:
    """`orders` orders at m7 (by `users` buyers taking turns), the night's
    payout 3 hours later (or none), then each refunded `order_age_ms` after
    it was placed, by the buyer."""
    placed = [
        order(T0 - order_age_ms + i * MIN, user=f"u{i % users}", merchant="m7", amount=amount)
        for i in range(orders)
    ]
    payouts = [payout(T0 - order_age_ms + 3 * HOUR, merchant="m7")] if paid else []
    refunds = [
        refund(T0 + i * MIN, order_id_of(o), user=f"u{i % users}", merchant="m7", amount=amount)
        for i, o in enumerate(placed)
    ]
    return placed + payouts, refunds


def payout_to(dest: str) -> Case:
    history = [order(T0 - 10 * DAY, merchant="m7")] + [
        payout(T0 - d * DAY, merchant="m7", amount=600_000, dest="iban-old")
        for d in range(9, 0, -1)
    ]
    return history, [payout(T0, merchant="m7", amount=600_000, dest=dest)]


def payout_against_earnings(paid: int) -> Case:
    history = [
        order(T0 - HOUR * (i + 2), user=f"u{i}", merchant="m7", amount=10_000) for i in range(3)
    ]
    history.sort(key=lambda f: f[1].occurred_at_ms)
    return history, [payout(T0, merchant="m7", amount=paid)]


def payouts_every(gap_ms: int, count: int) -> Case:
    return [], [payout(T0 + i * gap_ms, merchant="m7") for i in range(count)]


def band_since(band: Band, since_ms: int) -> BandHistory:
    """m7 healthy for a month, then `band` from `since_ms`."""
    return BandHistory(((T0 - 30 * DAY, Band.HEALTHY), (since_ms, band)))


def read_back(history: BandHistory | None) -> BandLookup:
    """m7's band as the pipeline reads it: an hour before each event."""
    if history is None:
        return no_bands
    return lambda merchant, at_ms: history.band_at(at_ms - HOUR) if merchant == "m7" else None


# Rules gated on a health band: m7's band history in their (positive,
# legitimate) cases; every other rule's cases have none.
BANDS: dict[str, tuple[BandHistory, BandHistory]] = {
    "critical_merchant_payout_hold": (
        band_since(Band.CRITICAL, T0 - 2 * HOUR),
        band_since(Band.AT_RISK, T0 - 2 * HOUR),  # sloppy, not fraud
    ),
}


def bands_of(rule_id: str, case: int) -> BandHistory | None:
    found = BANDS.get(rule_id)
    return found[case] if found else None


def gmv_then_payout(daily: int, last_day: int, age_days: int = 8, last_orders: int = 25) -> Case:
    """A merchant first seen `age_days` ago; six days of `daily` GMV, then
    `last_day` GMV in `last_orders` orders, then the payout."""
    return gmv_days([daily] * 6, last_day, age_days, last_orders)


def gmv_days(days: list[int], last_day: int, age_days: int = 0, last_orders: int = 25) -> Case:
    """A merchant first seen `age_days` ago (at least as long as `days`
    lasts), with the GMV of `days` on the days before the last, then
    `last_day` GMV in `last_orders` orders, then the payout."""
    age_days = max(age_days, len(days))
    history = [order(T0 - age_days * DAY, merchant="m7", amount=100)]
    for d, gmv in zip(range(len(days), 0, -1), days, strict=True):
        history += [
            order(T0 - d * DAY + h * HOUR, merchant="m7", amount=gmv // 10) for h in range(10)
        ]
    history += [
        order(T0 + i * 20 * MIN, user=f"b{i}", merchant="m7", amount=last_day // last_orders)
        for i in range(last_orders)
    ]
    return history, [payout(T0 + 15 * HOUR, merchant="m7", amount=last_day)]


def merchant_aged(age_ms: int) -> Case:
    history = [order(T0 - age_ms, merchant="m7", amount=100)]
    judged = [order(T0 + i * HOUR, user=f"u{i}", merchant="m7", amount=500_000) for i in range(5)]
    return history, judged


def small_orders_from_one_ip(account_age_ms: int) -> Case:
    history = [order(T0 - account_age_ms, user=f"u{i}", merchant="m0") for i in range(8)]
    judged = [
        order(T0 + i * 5 * MIN, user=f"u{i}", merchant="m7", amount=300, ip="10.1.1.1")
        for i in range(8)
    ]
    return history, judged


# rule id → (positive case, nearest legitimate case that must stay silent)
CASES: dict[str, tuple[Callable[[], Case], Callable[[], Case]]] = {
    "user_order_velocity_10m": (
        lambda: velocity_10m(8, 8 * MIN),
        lambda: velocity_10m(8, 2 * HOUR),
    ),
    "user_order_velocity_24h": (lambda: user_orders_24h(25), lambda: user_orders_24h(12)),
    "device_order_velocity_1h": (lambda: device_orders_1h(15), lambda: device_orders_1h(6)),
    "payment_accounts_24h": (lambda: card_accounts(4), lambda: card_accounts(3)),
    "ip_order_velocity_1h": (lambda: ip_orders_1h(40), lambda: ip_orders_1h(20)),
    "device_accounts_voucher_24h": (
        lambda: device_accounts_vouchers(5),
        lambda: device_accounts_vouchers(3),  # the family tablet
    ),
    "user_campaign_redemptions_24h": (
        lambda: campaign_twice_a_day(3, 4 * HOUR),
        lambda: campaign_twice_a_day(4, DAY),  # once a day, every day
    ),
    "device_subsidy_24h": (lambda: device_subsidy(10, 800), lambda: device_subsidy(6, 500)),
    "campaign_redemption_surge": (
        lambda: campaign_hour(per_day=300, burst=200),
        lambda: campaign_hour(per_day=300, burst=45),  # a busy lunch hour
    ),
    "merchant_user_subsidised_24h": (
        lambda: pair_redemptions(5, 3 * HOUR),
        lambda: every_meal(3),  # the most loyal regular with vouchers
    ),
    "merchant_captive_buyers_7d": (lambda: captive_buyers(8), lambda: captive_buyers(7)),
    "merchant_subsidy_share_7d": (
        lambda: subsidy_share(amount=2500, subsidy=1500),  # orders exist for the subsidy
        lambda: subsidy_share(amount=2500, subsidy=500),  # a voucher-heavy restaurant
    ),
    "self_dealing_buyer_pays_from_payout_account": (
        lambda: buyer_pays_from("m7", voucher="v-1"),
        lambda: buyer_pays_from("m7", voucher=None),  # the owner eating at their own shop
    ),
    "self_dealing_payout_to_buyer_account": (
        lambda: payout_to_buyer_account("iban-7"),
        lambda: payout_to_buyer_account("iban-own"),
    ),
    "device_merchants_voucher_24h": (
        lambda: device_tour(6),
        lambda: device_tour(10, accounts=1),  # a deal hunter on their own phone
    ),
    "user_refund_ratio_30d": (
        lambda: refunds_of_orders(6, 3),
        lambda: refunds_of_orders(6, 2),
    ),
    "user_refund_count_7d": (
        lambda: refunds_of_orders(6, 5, gap_ms=HOUR),
        lambda: refunds_of_orders(6, 4, gap_ms=HOUR),
    ),
    "merchant_refund_rate_24h": (
        lambda: merchant_refund_day(20, 6),
        lambda: merchant_refund_day(20, 2),  # a bad day in the kitchen
    ),
    "merchant_refunds_after_payout_7d": (
        lambda: refunds_after_payout(order_age_ms=3 * DAY),
        lambda: refunds_after_payout(order_age_ms=30 * HOUR),  # a bad evening, refunded next day
    ),
    "merchant_refund_value_after_payout_7d": (
        lambda: refunds_after_payout(3 * DAY, orders=2, amount=15_000),
        lambda: refunds_after_payout(3 * DAY, orders=2, amount=15_000, paid=False),  # not paid yet
    ),
    "user_refunds_after_payout_30d": (
        lambda: refunds_after_payout(3 * DAY, orders=2, users=1),
        lambda: refunds_after_payout(3 * DAY, orders=1, users=1),
    ),
    "new_destination_large_payout": (
        lambda: payout_to("iban-new"),
        lambda: payout_to("iban-old"),
    ),
    "payout_exceeds_earnings_30d": (
        lambda: payout_against_earnings(60_000),
        lambda: payout_against_earnings(30_000),  # paid exactly what it earned
    ),
    "payout_velocity_24h": (
        lambda: payouts_every(4 * HOUR, 3),
        lambda: payouts_every(DAY, 5),  # daily settlement
    ),
    "merchant_gmv_surge_before_payout": (
        lambda: gmv_then_payout(daily=50_000, last_day=400_000),
        lambda: gmv_then_payout(daily=200_000, last_day=600_000),  # a holiday rush
    ),
    "young_merchant_surge_before_payout": (
        lambda: gmv_days([20_000, 20_000], 400_000),  # opened 2 days ago, then 20x
        lambda: gmv_days([150_000, 225_000, 338_000], 506_000),  # a grand opening, 1.5x a day
    ),
    "established_merchant_gmv_surge": (
        lambda: gmv_then_payout(daily=50_000, last_day=400_000, age_days=120),
        lambda: gmv_then_payout(daily=200_000, last_day=600_000, age_days=120),
    ),
    "young_merchant_gmv_24h": (
        lambda: merchant_aged(3 * DAY),
        lambda: merchant_aged(40 * DAY),
    ),
    "critical_merchant_payout_hold": (
        lambda: payouts_every(DAY, 1),
        lambda: payouts_every(DAY, 1),
    ),
    "merchant_ip_fresh_small_orders_24h": (
        lambda: small_orders_from_one_ip(account_age_ms=HOUR),
        lambda: small_orders_from_one_ip(account_age_ms=30 * DAY),  # the office coffee run
    ),
}


def test_every_default_rule_has_cases() -> None:
    assert set(CASES) == set(RULES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_on_its_minimal_positive_case(rule_id: str) -> None:
    rule = RULES[rule_id]
    history, judged = CASES[rule_id][0]()
    fired = judge(rule, history, judged, read_back(bands_of(rule_id, 0)))
    assert fired, f"{rule_id} stayed silent on its positive case"
    alert = fired[-1].alert
    assert alert.rule_id == rule_id and alert.mode is rule.mode
    assert rule.comparison.holds(alert.observed, alert.threshold) and alert.margin >= 0
    event = judged[-1][1]
    payout_ = (event.payout_id, event.amount_minor, "EUR") if isinstance(event, Payout) else None
    freeze = freeze_for(rule, alert, "m7", payout_)
    if rule.action.kind is ActionKind.ALERT or rule.mode is Mode.SHADOW:
        assert freeze is None
    else:
        assert freeze is not None and freeze.kind is rule.action.kind


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_stays_silent_on_the_nearest_legitimate_case(rule_id: str) -> None:
    history, judged = CASES[rule_id][1]()
    bands = read_back(bands_of(rule_id, 1))
    assert judge(RULES[rule_id], history, judged, bands) == []


def test_a_payout_is_held_only_once_the_band_was_critical_an_hour_before() -> None:
    """The band is read an hour back (detectors.health_bands): a merchant
    critical for 30 minutes is not held yet; one released back to healthy
    an hour before is not held any more."""
    rule = RULES["critical_merchant_payout_hold"]
    case = payouts_every(DAY, 1)
    assert judge(rule, *case, read_back(band_since(Band.CRITICAL, T0 - 30 * MIN))) == []
    fired = judge(rule, *case, read_back(band_since(Band.CRITICAL, T0 - HOUR)))
    assert fired and fired[0].alert.evidence["merchant_health_band"] == "critical"
    assert judge(rule, *case, no_bands) == []  # no snapshot: no band, no hold


def test_device_tours_freeze_only_on_new_accounts_sharing_the_device() -> None:
    """Many merchants alone is enthusiasm; the freeze needs several accounts
    on the device, and new ones: an established couple's tablet stays free."""
    rule = RULES["device_merchants_voucher_24h"]
    assert judge(rule, *device_tour(3)) == []  # new accounts, few merchants
    assert judge(rule, *device_tour(10, accounts=2, account_age_ms=30 * DAY)) == []
    fired = judge(rule, *device_tour(6, accounts=3, account_age_ms=2 * DAY))
    assert fired
    evidence = fired[-1].alert.evidence
    assert evidence["distinct_user_id_1d"] == 3
    assert evidence["user_age"] == "53h"  # 2 days before the tour, judged 5 hours in


def weekly_caterer(age_days: int) -> Case:
    """One 4,000.00 catering day a week, small orders otherwise: the big day
    is 6x+ its own week every week, which is legitimate."""
    history = [order(T0 - age_days * DAY, merchant="m7", amount=100)]
    for d in range(13, 0, -1):
        amount = 400_000 if d == 7 else 8_000
        history += [
            order(T0 - d * DAY + h * HOUR, merchant="m7", amount=amount // 4) for h in range(4)
        ]
    history += [order(T0 + h * HOUR, merchant="m7", amount=100_000) for h in range(4)]
    return history, [payout(T0 + 15 * HOUR, merchant="m7", amount=400_000)]


def test_a_refund_is_after_payout_only_when_a_payout_came_between_order_and_refund() -> None:
    rule = RULES["merchant_refunds_after_payout_7d"]
    history, judged = refunds_after_payout(order_age_ms=3 * DAY)
    fired = judge(rule, history, judged)
    assert fired and fired[-1].alert.observed == 3
    # The payout before the orders paid for nothing of theirs.
    early = [payout(T0 - 4 * DAY, merchant="m7")]
    orders_only = [h for h in history if h[0] is not Topic.PAYOUTS]
    assert judge(rule, early + orders_only, judged) == []


@pytest.mark.parametrize(
    "rule_id", ["merchant_gmv_surge_before_payout", "young_merchant_surge_before_payout"]
)
def test_a_catering_day_is_not_a_bust_out(rule_id: str) -> None:
    """The same money in 4 large orders from regulars (a company's event)
    instead of 25 from a crowd: not held, at either age."""
    age = 8 if rule_id == "merchant_gmv_surge_before_payout" else 3
    days = [20_000] * min(age - 1, 6)
    assert judge(RULES[rule_id], *gmv_days(days, 400_000, age, last_orders=25))
    assert judge(RULES[rule_id], *gmv_days(days, 400_000, age, last_orders=4)) == []


def test_a_merchant_is_not_judged_against_its_opening_night() -> None:
    """26 hours old at its first payout: the 2 hours before its first full
    day are no baseline (that would be a 10x+ surge for any merchant)."""
    history = [order(T0 - 2 * HOUR + i * 30 * MIN, merchant="m7", amount=500) for i in range(3)]
    history += [
        order(T0 + 2 * HOUR + i * 30 * MIN, user=f"b{i}", merchant="m7", amount=15_000)
        for i in range(40)
    ]
    judged = [payout(T0 + 24 * HOUR, merchant="m7", amount=600_000)]
    assert judge(RULES["young_merchant_surge_before_payout"], history, judged) == []


def test_the_two_surge_holds_split_merchants_by_age() -> None:
    """A merchant is judged by exactly one of them, whatever its age."""
    for age in (3, 6, 8, 30):
        case = gmv_days([20_000] * min(age - 1, 6), 600_000, age)
        fired = [
            rule_id
            for rule_id in (
                "merchant_gmv_surge_before_payout",
                "young_merchant_surge_before_payout",
            )
            if judge(RULES[rule_id], *case)
        ]
        assert len(fired) == 1, (age, fired)


def test_an_established_weekly_caterer_is_never_held_only_alerted() -> None:
    history, judged = weekly_caterer(age_days=200)
    assert judge(RULES["merchant_gmv_surge_before_payout"], history, judged) == []
    assert judge(RULES["established_merchant_gmv_surge"], history, judged)


def test_a_young_campaign_peak_is_judged_against_its_own_short_life() -> None:
    """2.5 days old, redeemed mostly at lunch and dinner: its busiest hour is
    about 4-5x its average hour. Against a nominal 7-day baseline it would
    look 3.5x bigger still and freeze the campaign."""
    start = T0 - 60 * HOUR
    history = []
    for day in range(3):
        for hour, n in ((12, 30), (13, 25), (19, 30), (20, 20), (9, 5), (16, 5)):
            at = start + day * DAY + hour * HOUR
            if at < T0 - HOUR:
                history += [
                    redemption(at + i * 60_000, user=f"h{day}{hour}{i}", campaign="c-new")
                    for i in range(n)
                ]
    judged = [redemption(T0 + i * 70_000, user=f"l{i}", campaign="c-new") for i in range(45)]
    history.sort(key=lambda f: f[1].occurred_at_ms)
    assert judge(RULES["campaign_redemption_surge"], history, judged) == []


def settled_daily(days: int, late_night: bool) -> Case:
    """A merchant paid at 03:10 each day exactly what it earned the day
    before, for longer than the balance window, with sales slowly declining;
    a late-night place also sells between 00:00 and 03:00."""
    history: list[Fed] = []
    hours = (1, 2, 12, 13, 19, 20) if late_night else (12, 13, 19, 20)
    start = T0 - days * DAY
    earned = 0
    for d in range(days):
        day = start + d * DAY
        if d:  # the previous day's sales
            history.append(payout(day + 3 * HOUR + 10 * MIN, merchant="m7", amount=earned))
        amount = 10_000 + 1_000 * (days - d)
        earned = amount * len(hours)
        history += [
            order(day + h * HOUR, user=f"u{d}{h}", merchant="m7", amount=amount) for h in hours
        ]
    history.sort(key=lambda f: f[1].occurred_at_ms)
    payouts = [f for f in history if isinstance(f[1], Payout)]
    judged_from = history.index(payouts[-5])  # judge the last payouts, past day 30
    return history[:judged_from], history[judged_from:]


def test_daily_settlement_past_the_window_start_is_not_beyond_earnings() -> None:
    for late_night in (False, True):
        history, judged = settled_daily(40, late_night)
        assert judge(RULES["payout_exceeds_earnings_30d"], history, judged) == []


def test_a_takeover_draining_more_than_earned_after_day_30_is_caught() -> None:
    history, judged = settled_daily(40, late_night=True)
    drain = payout(judged[-1][1].occurred_at_ms + HOUR, merchant="m7", amount=300_000)
    assert judge(RULES["payout_exceeds_earnings_30d"], history, [*judged, drain])
