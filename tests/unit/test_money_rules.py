"""Money per currency in rules: a money limit names its currency (the rule
file check says where it does not), an event in a currency a rule does not
name is not judged by it, and alerts say which currency they speak of."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import orjson
import pytest

from detectors import engine
from detectors.engine import Observation
from detectors.events import Order, Payout, Topic
from detectors.money import PerCurrency, format_minor, minor_unit_exponent
from detectors.rulebook import parse_rulebook
from detectors.rules import Rule
from detectors.rules_conditions import Condition, Op
from stream.cli import main
from tests.unit.rule_harness import Fed
from tests.unit.rule_harness import judge as harness_judge
from tests.unit.test_catalogue import CASES
from tests.unit.test_catalogue import RULES as CATALOGUE

T = 1_800_000_000_000

SUM_RULE = """\
  - id: big_spender
    version: 1
    triggers: [orders]
    entity: user
    metric: {kind: sum, field: amount_minor, topics: [orders], window: 1h}
    compare: ">="
    threshold: {EUR: 50000, JPY: 6000}
    severity: high
"""
BALANCE_RULE = """\
  - id: overpaid
    version: 1
    triggers: [payouts]
    entity: merchant
    metric:
      kind: balance
      window: 30d
      credit: {kind: sum, field: amount_minor, topics: [orders]}
      debit: {kind: sum, field: amount_minor, topics: [payouts]}
    compare: "<"
    threshold: {EUR: 0, JPY: 0}
    severity: critical
"""


def book(rules: str) -> dict[str, Rule]:
    return {r.rule_id: r for r in parse_rulebook(f"rules:\n{rules}", "t.yaml").rules}


# Added to test_rulebook.MISTAKES: each names the error a rule file check reports.
MONEY_MISTAKES = {
    "money threshold without a currency": (
        SUM_RULE.replace("{EUR: 50000, JPY: 6000}", "50000"),
        "line 8: rules[0].threshold: a money threshold names its currency",
    ),
    "a currency on a count threshold": (
        SUM_RULE.replace("kind: sum, field: amount_minor,", "kind: count,"),
        "rules[0].threshold: this metric is currency-free",
    ),
    "not a currency code": (
        SUM_RULE.replace("JPY: 6000", "yen: 6000"),
        "rules[0].threshold: 'yen' is not an ISO 4217 currency code",
    ),
    "money condition without a currency": (
        SUM_RULE + "    where: [{field: amount_minor, op: '>=', value: 100}]\n",
        "rules[0].where[0].value: a money value names its currency (only 0 may stand alone)",
    ),
    "money volume without a currency": (
        SUM_RULE + "    min_volume: 100\n",
        "rules[0].min_volume: this volume is money",
    ),
    "volume and threshold in different currencies": (
        SUM_RULE + "    min_volume: {EUR: 100}\n",
        "rules[0].min_volume: names EUR; the threshold names EUR, JPY",
    ),
    "balance of money against counts": (
        BALANCE_RULE.replace(
            "debit: {kind: sum, field: amount_minor, topics: [payouts]}",
            "debit: {kind: count, topics: [payouts]}",
        ),
        "a balance subtracts money from money, or counts from counts",
    ),
    "money in a list": (
        SUM_RULE + "    where: [{field: amount_minor, op: in, value: [1, 2]}]\n",
        "compare money with ==, !=, <, <=, > or >= per currency",
    ),
}


def test_rules_check_refuses_a_money_threshold_without_a_currency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n" + SUM_RULE.replace("{EUR: 50000, JPY: 6000}", "50000"))
    assert main(["rules", "check", str(bad)]) == 1
    assert "rules[0].threshold: a money threshold names its currency" in capsys.readouterr().err
    good = tmp_path / "good.yaml"
    good.write_text("rules:\n" + SUM_RULE)
    assert main(["rules", "check", str(good)]) == 0
    assert "big_spender v1 [enforce] alert — money rule: EUR, JPY only" in capsys.readouterr().out


def test_currency_free_metrics_keep_plain_numbers() -> None:
    rules = book(
        textwrap.dedent("""\
        - id: subsidy_share
          version: 1
          triggers: [voucher-redemptions]
          entity: merchant
          metric:
            kind: ratio
            window: 7d
            numerator: {kind: sum, field: subsidy_minor, topics: [voucher-redemptions]}
            denominator: {kind: sum, field: amount_minor, topics: [orders]}
          min_volume: {EUR: 20000}
          where: [{field: subsidy_minor, op: ">", value: 0}]
          compare: ">="
          threshold: 0.5
          severity: high
        """)
    )
    rule = rules["subsidy_share"]
    assert rule.threshold == 0.5 and rule.metric.min_volume == PerCurrency.of({"EUR": 20000})
    assert rule.currencies == ("EUR",)
    assert rule.limits("EUR") == (0.5, 20000) and rule.limits("JPY") is None


def order(amount: int, currency: str) -> Order:
    return Order("e1", T, "o1", "u1", "m1", amount, currency)


def judge(rule: Rule, event: Order | Payout, values: list[int]) -> engine.AlertCandidate | None:
    observed = {
        spec.agg_id: Observation(v, T + 1000)
        for spec, v in zip(rule.metric.aggregates(), values, strict=True)
    }
    topic = Topic.ORDERS if isinstance(event, Order) else Topic.PAYOUTS
    return engine.evaluate(rule, topic, topic.value, event, observed, T)


def test_each_currency_is_judged_on_its_own_threshold() -> None:
    rule = book(SUM_RULE)["big_spender"]
    eur = judge(rule, order(100, "EUR"), [50000])
    assert eur is not None and eur.alert.threshold == 50000 and eur.alert.currency == "EUR"
    assert judge(rule, order(100, "EUR"), [49999]) is None
    # 6,000 yen crosses the yen threshold; the same number of cents would not.
    jpy = judge(rule, order(100, "JPY"), [6000])
    assert jpy is not None and jpy.alert.threshold == 6000 and jpy.alert.currency == "JPY"
    # A currency the rule does not name: not judged, however large the sum.
    assert judge(rule, order(100, "USD"), [10**9]) is None


def test_a_balance_is_judged_in_the_payouts_currency() -> None:
    rule = book(BALANCE_RULE)["overpaid"]
    payout = Payout("p1", T, "po1", "m1", 15000, "EUR", "iban-1")
    hit = judge(rule, payout, [10000, 15000])  # EUR credits 100.00, EUR debits 150.00
    assert hit is not None and hit.alert.evidence["credits"] == 10000
    wire = orjson.loads(orjson.dumps(hit.alert.to_wire()))
    assert (wire["currency"], wire["observed"], wire["threshold"]) == ("EUR", -5000, 0)
    assert judge(rule, payout, [20000, 15000]) is None


def test_count_rules_judge_every_currency_and_name_none() -> None:
    rule = book(
        SUM_RULE.replace("kind: sum, field: amount_minor,", "kind: count,").replace(
            "{EUR: 50000, JPY: 6000}", "3"
        )
    )["big_spender"]
    assert rule.currencies is None
    for currency in ("EUR", "JPY", "KWD"):
        hit = judge(rule, order(1, currency), [3])
        assert hit is not None and hit.alert.currency is None
        assert "currency" not in hit.alert.to_wire()


def test_a_money_condition_matches_only_the_currencies_it_names() -> None:
    small = Condition("amount_minor", Op.LE, PerCurrency.of({"EUR": 500, "JPY": 700}))
    assert small.matches(order(500, "EUR")) and not small.matches(order(501, "EUR"))
    assert small.matches(order(700, "JPY")) and not small.matches(order(1, "USD"))
    assert small.signature() == "amount_minor<=EUR:500,JPY:700"
    assert Condition("amount_minor", Op.GT, 0).matches(order(1, "USD"))


def test_minor_unit_exponents() -> None:
    assert [minor_unit_exponent(c) for c in ("EUR", "USD", "JPY", "KWD", "BHD")] == [2, 2, 0, 3, 3]
    assert format_minor(123450, "EUR") == "EUR 1,234.50"
    assert format_minor(10000, "JPY") == "JPY 10,000"
    assert format_minor(1250, "KWD") == "KWD 1.250"


def in_currency(events: list[Fed], currency: str, suffix: str = "") -> list[Fed]:
    return [
        (t, dataclasses.replace(e, currency=currency, event_id=e.event_id + suffix))
        for t, e in events
    ]


MONEY_RULES = sorted(r.rule_id for r in CATALOGUE.values() if r.currencies is not None)


def test_the_default_money_rules_are_the_ones_with_money_limits() -> None:
    assert MONEY_RULES == [
        "device_subsidy_24h",
        "established_merchant_gmv_surge",
        "merchant_gmv_surge_before_payout",
        "merchant_refund_value_after_payout_7d",
        "merchant_subsidy_share_7d",
        "payout_exceeds_earnings_30d",
        "young_merchant_gmv_24h",
        "young_merchant_surge_before_payout",
    ]
    assert all(CATALOGUE[r].currencies == ("EUR",) for r in MONEY_RULES)


@pytest.mark.parametrize("rule_id", MONEY_RULES)
def test_a_default_money_rule_ignores_a_currency_it_does_not_name(rule_id: str) -> None:
    history, judged = CASES[rule_id][0]()
    assert harness_judge(CATALOGUE[rule_id], history, judged)  # fires in EUR
    yen = harness_judge(CATALOGUE[rule_id], in_currency(history, "JPY"), in_currency(judged, "JPY"))
    assert yen == []


def test_yen_earnings_do_not_cover_a_euro_payout() -> None:
    """The positive payout case (EUR) with the same orders again in JPY: were
    the two added, the yen would pay for the euro payout and hide it."""
    rule = CATALOGUE["payout_exceeds_earnings_30d"]
    history, judged = CASES["payout_exceeds_earnings_30d"][0]()
    orders = [(t, e) for t, e in history if t is Topic.ORDERS]
    yen = in_currency(orders, "JPY", "-jpy") * 3
    mixed = sorted([*history, *yen], key=lambda fed: fed[1].occurred_at_ms)
    (hit,) = harness_judge(rule, mixed, judged)
    assert hit.alert.currency == "EUR"
