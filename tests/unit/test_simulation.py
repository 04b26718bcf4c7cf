"""The traffic simulator: determinism, contract, labels, and that each
scenario really crosses (or, for look-alikes, stays below) the line the
default rules draw. Window checks here are brute force over the event list,
independent of the rule engine."""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import TypeVar

import orjson
import pytest

from detectors.contract import FIELDS, validate_event
from detectors.events import Order, Payout, Refund, RefundInitiator, Topic, VoucherRedemption
from detectors.rules_entities import EntityType
from stream.cli import build_parser, main
from stream.simulation import SimulationConfig, SimulationResult, load_labels, simulate
from stream.simulation.labels import ExpectedAction, Family, ScenarioLabel, ScenarioName

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def run() -> SimulationResult:
    return simulate(SimulationConfig(seed=1, scale=0.1, days=8))


E = TypeVar("E", Order, Refund, VoucherRedemption, Payout)


def _of(run: SimulationResult, cls: type[E]) -> list[E]:
    return [event for _, event in run.timeline if isinstance(event, cls)]


def orders(run: SimulationResult) -> list[Order]:
    return _of(run, Order)


def redemptions(run: SimulationResult) -> list[VoucherRedemption]:
    return _of(run, VoucherRedemption)


def refunds(run: SimulationResult) -> list[Refund]:
    return _of(run, Refund)


def payouts(run: SimulationResult) -> list[Payout]:
    return _of(run, Payout)


def scenario(run: SimulationResult, name: ScenarioName) -> ScenarioLabel:
    return next(s for s in run.labels.scenarios if s.scenario is name)


def ids(label: ScenarioLabel, kind: EntityType, expected: bool = False) -> set[str]:
    refs = label.expect_on if expected else label.entities
    return {ref.id for ref in refs if ref.type is kind}


def max_count(times: Iterable[int], window_ms: int) -> int:
    """Most events in any window (t - window, t] ending at an event."""
    recent: deque[int] = deque()
    best = 0
    for t in sorted(times):
        recent.append(t)
        while recent[0] <= t - window_ms:
            recent.popleft()
        best = max(best, len(recent))
    return best


def max_distinct(pairs: Iterable[tuple[int, Hashable]], window_ms: int) -> int:
    """Most distinct members in any window (t - window, t] ending at an event."""
    items = sorted(pairs, key=lambda pair: pair[0])
    best = 0
    for i, (t, _) in enumerate(items):
        members = {m for s, m in items[: i + 1] if s > t - window_ms}
        best = max(best, len(members))
    return best


def fraud_entities(run: SimulationResult) -> set[tuple[EntityType, str]]:
    return {(e.type, e.id) for s in run.labels.fraud() for e in s.entities}


# --- determinism, format, contract ----------------------------------------


def test_same_seed_same_bytes_and_other_seed_differs() -> None:
    config = SimulationConfig(seed=7, scale=0.1, days=3)
    first, second = simulate(config), simulate(config)
    assert first.jsonl() == second.jsonl()
    assert first.labels.dumps() == second.labels.dumps()
    other = simulate(SimulationConfig(seed=8, scale=0.1, days=3))
    assert other.jsonl() != first.jsonl()


def test_every_line_is_a_valid_contract_event(run: SimulationResult) -> None:
    lines = run.jsonl().splitlines()
    assert len(lines) == run.labels.events == len(run.timeline)
    for line, (topic, event) in zip(lines, run.timeline, strict=True):
        doc = orjson.loads(line)
        assert set(doc) == {"topic", "value"} and doc["topic"] == topic.value
        value = doc["value"]
        assert set(value) <= {spec.name for spec in FIELDS[topic]}
        assert value["currency"] == "EUR"
        assert value["occurred_at"].endswith("Z") and len(value["occurred_at"]) == 24
        # The validator rebuilds exactly the event the simulator generated.
        assert validate_event(topic, value) == event


def test_event_ids_unique_times_sorted_and_inside_the_run(run: SimulationResult) -> None:
    events = [event for _, event in run.timeline]
    assert len({e.event_id for e in events}) == len(events)
    assert len({o.order_id for o in orders(run)}) == len(orders(run))
    times = [e.occurred_at_ms for e in events]
    assert times == sorted(times)
    config = SimulationConfig(scale=0.1, days=8)
    assert config.start_ms <= times[0] and times[-1] < config.end_ms


def test_redemptions_and_refunds_match_their_orders(run: SimulationResult) -> None:
    by_id = {o.order_id: o for o in orders(run)}
    for r in redemptions(run):
        assert r.order_id is not None
        order = by_id[r.order_id]
        assert (order.user_id, order.merchant_id, order.device_id, order.voucher_id) == (
            r.user_id,
            r.merchant_id,
            r.device_id,
            r.voucher_id,
        )
        assert 0 < r.occurred_at_ms - order.occurred_at_ms <= 20_000 and r.campaign_id
    for f in refunds(run):
        order = by_id[f.order_id]
        assert f.amount_minor <= order.amount_minor and f.occurred_at_ms > order.occurred_at_ms
        assert (f.user_id, f.merchant_id) == (order.user_id, order.merchant_id)


def test_labels_round_trip_through_the_file(run: SimulationResult, tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_bytes(run.labels.dumps())
    assert load_labels(path) == run.labels
    doc = orjson.loads(path.read_bytes())
    assert doc["start"] == "2026-11-01T00:00:00.000Z" and doc["scale"] == 0.1
    assert sum(doc["events_by_topic"].values()) == doc["events"]
    users = {e.user_id for _, e in run.timeline if hasattr(e, "user_id")}
    assert doc["active_entities"]["user"] == len(users) > 1000
    assert doc["active_entities"]["merchant"] == len({e.merchant_id for _, e in run.timeline})


def test_every_scenario_appears_with_entities(run: SimulationResult) -> None:
    labels = run.labels.scenarios
    assert {s.scenario for s in labels} == set(ScenarioName)
    assert len({s.scenario_id for s in labels}) == len(labels)
    for s in labels:
        assert s.entities and s.start_ms <= s.end_ms and s.description
        assert set(s.expect_on) <= set(s.entities)
        if s.fraud:
            assert s.expect_on and s.expected_action is not ExpectedAction.NONE
            assert s.family is not Family.LOOKALIKE and s.lookalike_of is None
        else:
            assert not s.expect_on and s.expected_action is ExpectedAction.NONE
            assert s.family is Family.LOOKALIKE and s.lookalike_of is not None


def test_scale_multiplies_volume_and_instances() -> None:
    small = simulate(SimulationConfig(seed=3, scale=1.0, days=2)).labels
    large = simulate(SimulationConfig(seed=3, scale=2.0, days=2)).labels
    assert 1.7 < large.events / small.events < 2.3
    assert len(large.scenarios) == 2 * len(small.scenarios)


def test_cli_writes_events_and_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, labels = tmp_path / "events.jsonl", tmp_path / "labels.json"
    argv = ["simulate", "--out", str(out), "--labels", str(labels), "--scale", "0.1"]
    assert main([*argv, "--days", "2", "--seed", "5", "--start", "2026-10-01"]) == 0
    summary = capsys.readouterr().out
    assert "orders" in summary and "29 scenarios" in summary
    loaded = load_labels(labels)
    assert loaded.events == len(out.read_bytes().splitlines()) and loaded.seed == 5
    assert out.read_bytes().startswith(b'{"topic":') and b"2026-10-01T" in out.read_bytes()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "--out", "x", "--scale", "0"])


# --- background -------------------------------------------------------------


def test_background_payouts_pay_exactly_the_previous_day(run: SimulationResult) -> None:
    config = SimulationConfig(scale=0.1, days=8)
    fraud = {i for kind, i in fraud_entities(run) if kind is EntityType.MERCHANT}
    # Settled once a week (a look-alike of its own), not daily.
    fraud |= ids(scenario(run, ScenarioName.FIRST_WEEKLY_PAYOUT), EntityType.MERCHANT)
    net: Counter[tuple[str, int]] = Counter()
    for o in orders(run):
        net[o.merchant_id, config.day_of(o.occurred_at_ms)] += o.amount_minor
    for f in refunds(run):
        net[f.merchant_id, config.day_of(f.occurred_at_ms)] -= f.amount_minor
    paid = {
        (p.merchant_id, config.day_of(p.occurred_at_ms)): p
        for p in payouts(run)
        if p.merchant_id not in fraud
    }
    assert len(paid) == sum(1 for p in payouts(run) if p.merchant_id not in fraud)
    for (merchant, day), payout in paid.items():
        assert payout.amount_minor == net[merchant, day - 1]
        assert 3 * HOUR <= payout.occurred_at_ms % DAY < 3 * HOUR + 20 * MINUTE
    expected = {(m, d + 1) for (m, d), v in net.items() if v > 0 and d < 7 and m not in fraud}
    assert set(paid) == expected


def test_background_stays_clear_of_the_thresholds(run: SimulationResult) -> None:
    fraud = fraud_entities(run)
    by_user, by_device, by_ip = defaultdict(list), defaultdict(list), defaultdict(list)
    for o in orders(run):
        if (EntityType.USER, o.user_id) not in fraud:
            by_user[o.user_id].append(o.occurred_at_ms)
        if (EntityType.DEVICE, o.device_id) not in fraud:
            by_device[o.device_id].append(o.occurred_at_ms)
        if (EntityType.IP, o.ip) not in fraud:
            by_ip[o.ip].append(o.occurred_at_ms)
    assert max(max_count(t, 10 * MINUTE) for t in by_user.values()) <= 5
    assert max(max_count(t, DAY) for t in by_user.values()) <= 15
    assert max(max_count(t, HOUR) for t in by_device.values()) <= 8
    assert max(max_count(t, HOUR) for t in by_ip.values()) <= 20  # the office lunch: 15
    per_user_campaign = defaultdict(list)
    for r in redemptions(run):
        if (EntityType.USER, r.user_id) not in fraud:
            per_user_campaign[r.user_id, r.campaign_id].append(r.occurred_at_ms)
    assert max(max_count(t, DAY) for t in per_user_campaign.values()) <= 2
    refunded = Counter(f.user_id for f in refunds(run) if (EntityType.USER, f.user_id) not in fraud)
    assert max(refunded.values()) <= 2
    assert all(f.initiated_by is not RefundInitiator.MERCHANT for f in _plain_refunds(run))


def _plain_refunds(run: SimulationResult) -> list[Refund]:
    """Refunds no fraud scenario is about (merchant-initiated ones are all scenario)."""
    fraud = {i for kind, i in fraud_entities(run) if kind is EntityType.MERCHANT}
    return [f for f in refunds(run) if f.merchant_id not in fraud]


# --- frauds cross their line ---------------------------------------------------


def test_velocity_scenarios_cross(run: SimulationResult) -> None:
    tester = ids(scenario(run, ScenarioName.CARD_TESTING_BURST), EntityType.USER)
    times = [o.occurred_at_ms for o in orders(run) if o.user_id in tester]
    assert max_count(times, 10 * MINUTE) >= 12
    card = ids(scenario(run, ScenarioName.SHARED_CARD_ACCOUNTS), EntityType.PAYMENT)
    users = [(o.occurred_at_ms, o.user_id) for o in orders(run) if o.payment_fingerprint in card]
    assert max_distinct(users, DAY) == 6
    ip = ids(scenario(run, ScenarioName.BOT_IP_BURST), EntityType.IP)
    assert max_count([o.occurred_at_ms for o in orders(run) if o.ip in ip], HOUR) >= 60


def test_device_farm_and_hopping_cross(run: SimulationResult) -> None:
    farm = ids(scenario(run, ScenarioName.DEVICE_FARM), EntityType.DEVICE, expected=True)
    users = [(r.occurred_at_ms, r.user_id) for r in redemptions(run) if r.device_id in farm]
    assert max_distinct(users, DAY) >= 8
    farm_label = scenario(run, ScenarioName.DEVICE_FARM)
    redeemed_at = {r.merchant_id for r in redemptions(run) if r.device_id in farm}
    assert not redeemed_at & ids(farm_label, EntityType.MERCHANT)  # victims, not fraud
    hop = ids(scenario(run, ScenarioName.DEVICE_HOPPING), EntityType.DEVICE)
    toured = [r for r in redemptions(run) if r.device_id in hop]
    assert max_distinct([(r.occurred_at_ms, r.merchant_id) for r in toured], 6 * HOUR) >= 8
    assert max_distinct([(r.occurred_at_ms, r.user_id) for r in toured], DAY) >= 2


def test_a_weekly_merchant_is_paid_its_whole_week_once(run: SimulationResult) -> None:
    (merchant,) = ids(scenario(run, ScenarioName.FIRST_WEEKLY_PAYOUT), EntityType.MERCHANT)
    (payout,) = [p for p in payouts(run) if p.merchant_id == merchant]
    earned = sum(o.amount_minor for o in orders(run) if o.merchant_id == merchant)
    paid_for = [f for f in refunds(run) if f.merchant_id == merchant]
    # The week's refunds count; one asked for on the payout's own day comes off the next.
    cut = payout.occurred_at_ms - payout.occurred_at_ms % DAY
    earned -= sum(f.amount_minor for f in paid_for if f.occurred_at_ms < cut)
    assert payout.amount_minor == earned >= 500_000


def test_a_deal_hunter_tours_merchants_alone_on_their_own_phone(run: SimulationResult) -> None:
    """As many merchants as device hopping, but one established account on
    one device: what device_merchants_voucher_24h must leave alone."""
    label = scenario(run, ScenarioName.DEAL_HUNTER)
    user, device = ids(label, EntityType.USER).pop(), ids(label, EntityType.DEVICE).pop()
    used = [r for r in redemptions(run) if r.device_id == device]
    assert {r.user_id for r in used} == {user}
    assert max_distinct([(r.occurred_at_ms, r.merchant_id) for r in used], DAY) >= 8
    first_order = min(o.occurred_at_ms for o in orders(run) if o.user_id == user)
    assert first_order < min(r.occurred_at_ms for r in used)  # has history before the tour


def test_campaign_scenarios_cross(run: SimulationResult) -> None:
    campaign = ids(scenario(run, ScenarioName.CAMPAIGN_LEAK), EntityType.CAMPAIGN).pop()
    times = sorted(r.occurred_at_ms for r in redemptions(run) if r.campaign_id == campaign)
    peak_end = max(times, key=lambda t: sum(1 for s in times if t - HOUR < s <= t))
    in_hour = sum(1 for s in times if peak_end - HOUR < s <= peak_end)
    in_week = sum(1 for s in times if peak_end - 7 * DAY < s <= peak_end)
    assert in_hour >= 200 and in_hour >= 8 * in_week / (7 * 24)
    assert peak_end - times[0] > 2 * DAY  # the campaign ran for days before the leak
    user = ids(scenario(run, ScenarioName.CAMPAIGN_REPEAT_REDEEMER), EntityType.USER)
    per_campaign = Counter(r.campaign_id for r in redemptions(run) if r.user_id in user)
    assert max(per_campaign.values()) == 5


def test_collusion_and_self_dealing_cross(run: SimulationResult) -> None:
    label = scenario(run, ScenarioName.COLLUSION_PAIR)
    merchant = ids(label, EntityType.MERCHANT).pop()
    pairs = defaultdict(list)
    for r in redemptions(run):
        if r.merchant_id == merchant:
            pairs[r.user_id].append(r.occurred_at_ms)
    assert sum(1 for t in pairs.values() if max_count(t, DAY) >= 6) == 3
    assert sum(len(t) for t in pairs.values()) / len(pairs) >= 10
    label = scenario(run, ScenarioName.SELF_DEALING)
    merchant = ids(label, EntityType.MERCHANT).pop()
    own = {p.destination_fingerprint for p in payouts(run) if p.merchant_id == merchant}
    first_paid = min(p.occurred_at_ms for p in payouts(run) if p.merchant_id == merchant)
    dealt = [
        o
        for o in orders(run)
        if o.merchant_id == merchant and o.payment_fingerprint in own and o.voucher_id
    ]
    assert len(dealt) >= 4 and all(o.occurred_at_ms > first_paid for o in dealt)
    assert own <= ids(label, EntityType.PAYMENT)


def test_refund_scenarios_cross(run: SimulationResult) -> None:
    user = ids(scenario(run, ScenarioName.SERIAL_REFUNDER), EntityType.USER)
    mine = [f.occurred_at_ms for f in refunds(run) if f.user_id in user]
    assert max_count(mine, 7 * DAY) >= 5
    assert len(mine) / sum(1 for o in orders(run) if o.user_id in user) >= 0.5
    by_id = {o.order_id: o for o in orders(run)}
    merchant = ids(scenario(run, ScenarioName.REFUND_AFTER_SETTLEMENT), EntityType.MERCHANT)
    late = [
        f.occurred_at_ms
        for f in refunds(run)
        if f.merchant_id in merchant
        and f.initiated_by is RefundInitiator.MERCHANT
        and f.occurred_at_ms - by_id[f.order_id].occurred_at_ms > DAY
    ]
    assert max_count(late, 7 * DAY) >= 3
    merchant = ids(scenario(run, ScenarioName.MERCHANT_REFUND_SPIKE), EntityType.MERCHANT)
    theirs = [f for f in refunds(run) if f.merchant_id in merchant]
    spike = [f for f in theirs if f.initiated_by is RefundInitiator.MERCHANT]
    last = max(f.occurred_at_ms for f in spike)
    sold = sum(
        1
        for o in orders(run)
        if o.merchant_id in merchant and last - DAY < o.occurred_at_ms <= last
    )
    back = sum(1 for f in theirs if last - DAY < f.occurred_at_ms <= last)
    assert len(spike) == 12 and sold >= 25 and back / sold >= 0.35


def _paid_out_age(run: SimulationResult, refund: Refund) -> int | None:
    """The refunded order's age when a payout of its merchant came between
    the order and the refund (the rules' reading), else None."""
    placed = next(o.occurred_at_ms for o in orders(run) if o.order_id == refund.order_id)
    paid = any(
        placed < p.occurred_at_ms <= refund.occurred_at_ms
        for p in payouts(run)
        if p.merchant_id == refund.merchant_id
    )
    return refund.occurred_at_ms - placed if paid else None


def test_refund_ring_is_paid_out_and_old_and_the_household_refund_is_young(
    run: SimulationResult,
) -> None:
    label = scenario(run, ScenarioName.REFUND_RING)
    merchant, buyers = ids(label, EntityType.MERCHANT), ids(label, EntityType.USER)
    ring = [f for f in refunds(run) if f.merchant_id in merchant and f.user_id in buyers]
    ages = [_paid_out_age(run, f) for f in ring]
    assert len(ring) == 8 and all(a is not None and a >= 2 * DAY for a in ages)
    label = scenario(run, ScenarioName.HOUSEHOLD_REFUND)
    merchant, members = ids(label, EntityType.MERCHANT), ids(label, EntityType.USER)
    theirs = [f for f in refunds(run) if f.merchant_id in merchant and f.user_id in members]
    ages = [_paid_out_age(run, f) for f in theirs]
    assert len(theirs) == 4 and all(a is not None and a < DAY for a in ages)  # paid out, young


def _balance_before(run: SimulationResult, merchant: str, payout: Payout) -> int:
    """Orders - refunds - payouts of `merchant` up to and including `payout`."""
    total = 0
    for topic, event in run.timeline:
        if event.occurred_at_ms > payout.occurred_at_ms:
            break
        if event.merchant_id != merchant or topic is Topic.VOUCHER_REDEMPTIONS:
            continue
        amount = event.amount_minor if isinstance(event, Order | Refund | Payout) else 0
        total += amount if topic is Topic.ORDERS else -amount
    return total


def test_payout_scenarios_cross(run: SimulationResult) -> None:
    label = scenario(run, ScenarioName.ACCOUNT_TAKEOVER)
    merchant = ids(label, EntityType.MERCHANT).pop()
    theirs = [p for p in payouts(run) if p.merchant_id == merchant]
    stolen = max(theirs, key=lambda p: p.amount_minor)
    usual = {p.destination_fingerprint for p in theirs if p is not stolen}
    assert stolen.amount_minor >= 500_000 and len(usual) == 1
    assert stolen.destination_fingerprint not in usual
    first_seen = min(o.occurred_at_ms for o in orders(run) if o.merchant_id == merchant)
    assert stolen.occurred_at_ms - first_seen >= 7 * DAY
    assert _balance_before(run, merchant, stolen) < -10_000
    merchant = ids(scenario(run, ScenarioName.PAYOUT_DRAIN), EntityType.MERCHANT).pop()
    drained = [p for p in payouts(run) if p.merchant_id == merchant]
    assert max_count([p.occurred_at_ms for p in drained], DAY) >= 4
    assert min(_balance_before(run, merchant, p) for p in drained) < -10_000


def _gmv_ratio(run: SimulationResult, merchant: str, at_ms: int) -> float:
    """GMV of the 24 h before `at_ms` over the daily average of the 7 days
    before it, the last day included (the stricter reading of the rule)."""
    times = [(o.occurred_at_ms, o.amount_minor) for o in orders(run) if o.merchant_id == merchant]
    day = sum(a for t, a in times if at_ms - DAY < t <= at_ms)
    week = sum(a for t, a in times if at_ms - 7 * DAY < t <= at_ms)
    return day / (week / 7)


def test_bust_out_crosses_and_holiday_rush_does_not(run: SimulationResult) -> None:
    merchant = ids(scenario(run, ScenarioName.BUST_OUT), EntityType.MERCHANT).pop()
    cash_out = max(
        (p for p in payouts(run) if p.merchant_id == merchant), key=lambda p: p.amount_minor
    )
    assert (
        cash_out.amount_minor >= 800_000
        and _gmv_ratio(run, merchant, cash_out.occurred_at_ms) >= 6.2
    )
    merchant = ids(scenario(run, ScenarioName.HOLIDAY_RUSH), EntityType.MERCHANT).pop()
    theirs = [p for p in payouts(run) if p.merchant_id == merchant]
    opened = min(o.occurred_at_ms for o in orders(run) if o.merchant_id == merchant)
    judged = [p for p in theirs if p.occurred_at_ms - opened > 5 * DAY]  # the rule's age gate
    assert max(theirs, key=lambda p: p.amount_minor) in judged  # the holiday's payout
    assert max(_gmv_ratio(run, merchant, p.occurred_at_ms) for p in judged) < 3.5
    assert max(p.amount_minor for p in theirs) >= 2 * min(p.amount_minor for p in theirs)


def _life_ratio(run: SimulationResult, merchant: str, at_ms: int) -> tuple[float, int, int]:
    """GMV of the 24 h before `at_ms` over the merchant's daily average before
    them (its own life: the young merchants' baseline), the orders in those
    24 h and their GMV."""
    times = [(o.occurred_at_ms, o.amount_minor) for o in orders(run) if o.merchant_id == merchant]
    opened = min(t for t, _ in times)
    day = [a for t, a in times if at_ms - DAY < t <= at_ms]
    earlier = sum(a for t, a in times if t <= at_ms - DAY)
    return sum(day) / (earlier / ((at_ms - DAY - opened) / DAY)), len(day), sum(day)


def test_young_bust_out_crosses_and_grand_opening_does_not(run: SimulationResult) -> None:
    merchant = ids(scenario(run, ScenarioName.YOUNG_BUST_OUT), EntityType.MERCHANT).pop()
    theirs = [p for p in payouts(run) if p.merchant_id == merchant]
    opened = min(o.occurred_at_ms for o in orders(run) if o.merchant_id == merchant)
    cash_out = max(theirs, key=lambda p: p.amount_minor)
    assert DAY < cash_out.occurred_at_ms - opened < 7 * DAY
    ratio, count, _ = _life_ratio(run, merchant, cash_out.occurred_at_ms)
    assert ratio >= 20 and count >= 20 and cash_out.amount_minor >= 800_000
    merchant = ids(scenario(run, ScenarioName.GRAND_OPENING), EntityType.MERCHANT).pop()
    opened = min(o.occurred_at_ms for o in orders(run) if o.merchant_id == merchant)
    judged = [
        p
        for p in payouts(run)
        if p.merchant_id == merchant and p.occurred_at_ms - opened > 1.5 * DAY
    ]
    seen = [_life_ratio(run, merchant, p.occurred_at_ms) for p in judged]
    assert max(gmv for _, _, gmv in seen) >= 300_000  # past the rules' volume: judged
    assert max(ratio for ratio, _, _ in seen) < 4


def test_catering_is_a_few_large_orders_from_a_regular(run: SimulationResult) -> None:
    label = scenario(run, ScenarioName.CATERING_BURST)
    merchant, client = ids(label, EntityType.MERCHANT).pop(), ids(label, EntityType.USER).pop()
    big = [o for o in orders(run) if o.merchant_id == merchant and o.amount_minor >= 100_000]
    assert len(big) == 3 and {o.user_id for o in big} == {client}
    first = min(o.occurred_at_ms for o in orders(run) if o.user_id == client)
    assert first < min(o.occurred_at_ms for o in big)  # a regular, not a new account
    after = [
        p
        for p in payouts(run)
        if p.merchant_id == merchant and p.occurred_at_ms > big[0].occurred_at_ms
    ]
    ratio, _, _ = _life_ratio(run, merchant, after[0].occurred_at_ms)
    day = [
        o
        for o in orders(run)
        if o.merchant_id == merchant
        and after[0].occurred_at_ms - DAY < o.occurred_at_ms <= after[0].occurred_at_ms
    ]
    assert ratio >= 6 and len(day) < 20  # the surge rules' line, and the orders that keep it clear


def test_brushing_crosses_and_office_lunch_does_not(run: SimulationResult) -> None:
    first_seen: dict[str, int] = {}
    for o in orders(run):
        first_seen.setdefault(o.user_id, o.occurred_at_ms)
    merchant = ids(scenario(run, ScenarioName.BRUSHING), EntityType.MERCHANT).pop()
    fresh_small = defaultdict(list)
    for o in orders(run):
        if o.amount_minor <= 500 and o.occurred_at_ms - first_seen[o.user_id] < DAY:
            fresh_small[o.merchant_id, o.ip].append((o.occurred_at_ms, o.user_id))
    best = {
        key[0]: max_distinct(v, DAY) for key, v in fresh_small.items() if max_distinct(v, DAY) >= 8
    }
    assert set(best) == {merchant}
    label = scenario(run, ScenarioName.OFFICE_LUNCH)
    office = ids(label, EntityType.IP).pop()
    lunch = [o for o in orders(run) if o.ip == office]
    assert len(lunch) == 15 and max(o.amount_minor for o in lunch) > 500
    assert all(first_seen[o.user_id] < o.occurred_at_ms for o in lunch)  # not fresh


def test_look_alikes_stay_below(run: SimulationResult) -> None:
    label = scenario(run, ScenarioName.FAMILY_TABLET)
    tablet = ids(label, EntityType.DEVICE).pop()
    used = [r for r in redemptions(run) if r.device_id == tablet]
    assert (
        len({r.user_id for r in used}) <= 3 and max(Counter(r.user_id for r in used).values()) <= 2
    )
    card = ids(label, EntityType.PAYMENT).pop()
    assert len({o.user_id for o in orders(run) if o.payment_fingerprint == card}) == 3
    label = scenario(run, ScenarioName.REGULAR_CUSTOMER)
    user, merchant = ids(label, EntityType.USER).pop(), ids(label, EntityType.MERCHANT).pop()
    config = SimulationConfig(scale=0.1, days=8)
    daily = Counter(
        config.day_of(r.occurred_at_ms)
        for r in redemptions(run)
        if r.user_id == user and r.merchant_id == merchant
    )
    assert set(daily.values()) == {1} and len(daily) == 8
    chain = ids(scenario(run, ScenarioName.CHAIN_STORES), EntityType.MERCHANT)
    shared = {p.destination_fingerprint for p in payouts(run) if p.merchant_id in chain}
    assert len(chain) == 8 and len(shared) == 1
    label = scenario(run, ScenarioName.BANK_ACCOUNT_CHANGE)
    merchant = ids(label, EntityType.MERCHANT).pop()
    theirs = [p for p in payouts(run) if p.merchant_id == merchant]
    assert len({p.destination_fingerprint for p in theirs}) == 2
    assert min(p.amount_minor for p in theirs) >= 500_000
