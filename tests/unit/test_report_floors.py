"""Report floors (detectors.counted) never exceed a value at which the rule
fires: below the floor the store does not read the ring, so a floor set
too high would leave a firing rule's alert without its counted events."""

from __future__ import annotations

import itertools

import pytest

from detectors.aggregates import Observation
from detectors.events import Order
from detectors.rulebook import parse_rulebook
from detectors.rules import Rule
from tests.unit.test_rulebook import book

RATIO = """\
- id: share
  version: 1
  triggers: [refunds]
  entity: merchant
  metric:
    kind: ratio
    window: 1d
    numerator: {{kind: count, topics: [refunds]}}
    denominator: {{kind: count, topics: [orders]}}
  min_volume: {volume}
  compare: "{compare}"
  threshold: {threshold}
  severity: high
"""
MONEY_RATIO = """\
- id: subsidy_share
  version: 1
  triggers: [voucher-redemptions]
  entity: merchant
  metric:
    kind: ratio
    window: 1d
    numerator: {kind: sum, field: subsidy_minor, topics: [voucher-redemptions]}
    denominator: {kind: sum, field: amount_minor, topics: [orders]}
  min_volume: {EUR: 40, JPY: 7}
  compare: ">="
  threshold: 0.3
  severity: high
"""
ORDER = Order("e", 0, "o", "u", "m", 900, "EUR")


def _ratio(rule: Rule, numerator: int, denominator: int, currency: str) -> float | None:
    assert rule.metric.other is not None
    limits = rule.limits(currency)
    assert limits is not None
    observed = {rule.metric.other.agg_id: Observation(denominator, 0)}
    return rule.metric.evaluator.value(
        rule, ORDER, Observation(numerator, 0), observed, limits[1], {}
    )


def _fires_below_floor(rule: Rule, currency: str, values: range) -> list[tuple[int, int]]:
    floor = rule.metric.evaluator.report_floor(rule)
    assert floor is not None
    limits = rule.limits(currency)
    assert limits is not None
    at = floor.at(currency if rule.metric.aggregate.per_currency else None)
    assert at > 0
    return [
        (n, d)
        for n, d in itertools.product(values, values)
        if (v := _ratio(rule, n, d, currency)) is not None
        and rule.comparison.holds(v, limits[0])
        and n < at
    ]


@pytest.mark.parametrize(
    ("threshold", "volume", "compare", "floor"),
    [
        (0.5, 5, ">=", 2),
        (0.3, 20, ">=", 6),
        (0.3, 20, ">", 6),
        (0.7, 3, ">=", 2),
        (0.9, 0, ">=", 1),
    ],
)
def test_a_ratio_reports_from_threshold_times_volume(
    threshold: float, volume: int, compare: str, floor: int
) -> None:
    text = RATIO.format(threshold=threshold, volume=volume, compare=compare)
    (rule,) = parse_rulebook(book(text)).rules
    found = rule.metric.evaluator.report_floor(rule)
    assert found is not None and found.at(None) == floor
    assert _fires_below_floor(rule, "EUR", range(0, 60)) == []


def test_a_money_ratio_reports_per_currency() -> None:
    (rule,) = parse_rulebook(book(MONEY_RATIO)).rules
    found = rule.metric.evaluator.report_floor(rule)
    assert found is not None and (found.at("EUR"), found.at("JPY")) == (12, 2)
    for currency in ("EUR", "JPY"):
        assert _fires_below_floor(rule, currency, range(0, 60)) == []


COUNT_OVER_MONEY = """\
- id: refunds_per_euro
  version: 1
  triggers: [refunds]
  entity: merchant
  metric:
    kind: ratio
    window: 1d
    numerator: {kind: count, topics: [refunds]}
    denominator: {kind: sum, field: amount_minor, topics: [orders]}
  min_volume: {EUR: 40, JPY: 7}
  compare: ">"
  threshold: {EUR: 0.3, JPY: 2}
  severity: high
"""


def test_a_count_over_money_reports_from_its_lowest_currency() -> None:
    """The count is one key for every currency: its floor is the lowest of
    the currencies' (0.3 x 40 = 12 for EUR, 2 x 7 = 14 for JPY)."""
    (rule,) = parse_rulebook(book(COUNT_OVER_MONEY)).rules
    found = rule.metric.evaluator.report_floor(rule)
    assert found is not None and found.at(None) == 12
    for currency in ("EUR", "JPY"):
        assert _fires_below_floor(rule, currency, range(0, 60)) == []
