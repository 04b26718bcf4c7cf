from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from detectors.aggregates import AggregateKind
from detectors.money import PerCurrency
from detectors.rulebook import RulebookError, parse_rulebook
from detectors.rules import ActionKind, AgeRequirement, Comparison, CountRequirement, Mode
from tests.unit.test_money_rules import MONEY_MISTAKES

REPO = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000

GOOD_RULE = """\
  - id: r1
    version: 1
    triggers: [orders]
    entity: user
    metric: {kind: count, topics: [orders], window: 10m}
    compare: ">="
    threshold: 5
    severity: high
"""


def book(rules: str, header: str = "") -> str:
    return f"{header}rules:\n{textwrap.indent(textwrap.dedent(rules), '  ')}"


def errors(text: str) -> list[str]:
    with pytest.raises(RulebookError) as info:
        parse_rulebook(text, "test.yaml")
    return [str(e) for e in info.value.errors]


def test_shipped_default_rules_are_valid() -> None:
    text = (REPO / "stream/rulesets/default.yaml").read_text()
    rb = parse_rulebook(text)
    assert len(rb.rules) >= 5
    assert {r.action.kind for r in rb.rules} == set(ActionKind)


def test_a_good_rule_parses_into_specs() -> None:
    rb = parse_rulebook(f"rules:\n{GOOD_RULE}")
    (rule,) = rb.rules
    assert rule.metric.aggregate.kind is AggregateKind.COUNT
    assert rule.metric.aggregate.window_ms == 600_000
    assert rule.metric.aggregate.bucket_ms == 30_000
    assert rule.comparison is Comparison.GE and rule.threshold == 5
    assert rule.mode is Mode.ENFORCE and rule.cooldown_ms == 3_600_000


MISTAKES = {
    "yaml syntax": ("rules: [\n  - id: x\n", "not valid YAML"),
    "no rules list": ("ruleset: x\n", "top-level `rules:` list"),
    "missing key": (
        GOOD_RULE.replace("    severity: high\n", ""),
        "rules[0].severity: is required",
    ),
    "unknown key": (GOOD_RULE + "    colour: red\n", "unknown key(s): colour"),
    "bad duration": (
        GOOD_RULE.replace("window: 10m", "window: ten minutes"),
        "rules[0].metric.window: expected a duration",
    ),
    "unknown topic": (
        GOOD_RULE.replace("triggers: [orders]", "triggers: [ordres]"),
        "'ordres' is not one of orders",
    ),
    "unknown entity": (
        GOOD_RULE.replace("entity: user", "entity: customer"),
        "rules[0].entity[0]: 'customer' is not one of user",
    ),
    "bad aggregate": (
        GOOD_RULE.replace("kind: count", "kind: average"),
        "'average' is not one of count, sum, distinct, ratio, balance, surge, age",
    ),
    "sum without field": (
        GOOD_RULE.replace("kind: count", "kind: sum"),
        "rules[0].metric.field: is required",
    ),
    "field not on topic": (
        GOOD_RULE.replace("kind: count", "kind: sum, field: subsidy_minor"),
        "orders events have no field 'subsidy_minor'",
    ),
    "bad comparison": (GOOD_RULE.replace('">="', '"=>"'), "'=>' is not one of >=, >, <=, <"),
    "threshold not a number": (
        GOOD_RULE.replace("threshold: 5", "threshold: lots"),
        "rules[0].threshold: expected a number",
    ),
    "bad severity": (
        GOOD_RULE.replace("severity: high", "severity: urgent"),
        "'urgent' is not one of low, medium, high, critical",
    ),
    "bad freeze scope": (
        GOOD_RULE + "    action: {type: benefit_freeze, scope: all, duration: 1d}\n",
        "rules[0].action.scope: 'all' is not one of vouchers",
    ),
    "version zero": (GOOD_RULE.replace("version: 1", "version: 0"), "must be between 1 and"),
    "ratio threshold": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}",
            "metric: {kind: ratio, window: 30d, numerator: {kind: count, topics: [refunds]}, "
            "denominator: {kind: count, topics: [orders]}}",
        ),
        "a ratio threshold is a fraction",
    ),
    "bad condition op": (
        GOOD_RULE + "    where: [{field: amount_minor, op: '~', value: 1}]\n",
        "rules[0].where[0].op: '~' is not one of",
    ),
    "odd window": (GOOD_RULE.replace("window: 10m", "window: 7s"), "multiple of 20s"),
    "huge version": (
        GOOD_RULE.replace("version: 1", "version: 100000000000000000000"),
        "must be between 1 and",
    ),
    "huge duration": (
        GOOD_RULE + "    action: {type: benefit_freeze, scope: vouchers, duration: 3000000d}\n",
        "must be at most 3650d",
    ),
    "key the kind ignores": (
        GOOD_RULE.replace("kind: count,", "kind: count, field: user_id,"),
        "count does not take: field",
    ),
    "misspelt ratio part": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}",
            "metric: {kind: ratio, window: 30d, numerator: {kind: count, topics: [refunds], "
            "wehre: []}, denominator: {kind: count, topics: [orders]}}",
        ),
        "rules[0].metric.numerator: unknown key(s): wehre",
    ),
    "surge baseline too short": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}",
            "metric: {kind: surge, of: {kind: count, topics: [orders]}, recent: 1h, baseline: 90m}",
        ).replace("threshold: 5", "threshold: 6"),
        "rules[0].metric.baseline: must be at least twice the recent window",
    ),
    "surge threshold not a factor": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}",
            "metric: {kind: surge, of: {kind: count, topics: [orders]}, recent: 1h, baseline: 7d}",
        ).replace("threshold: 5", "threshold: 0.5"),
        "a surge threshold is a factor above 1",
    ),
    "surge of distinct values": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}",
            "metric: {kind: surge, of: {kind: distinct, field: ip, topics: [orders]}, "
            "recent: 1h, baseline: 7d}",
        ),
        "rules[0].metric.of.kind: a surge compares counts or sums",
    ),
    "balance without debits": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}",
            "metric: {kind: balance, window: 30d, "
            "credit: {kind: sum, field: amount_minor, topics: [orders]}}",
        ),
        "rules[0].metric.debit: is required",
    ),
    "min_volume on an age": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}", "metric: {kind: age}"
        ).replace("threshold: 5", "threshold: 2d")
        + "    min_volume: 3\n",
        "rules[0].min_volume: age metrics have no volume",
    ),
    "surge drop as a factor above 1": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}",
            "metric: {kind: surge, of: {kind: count, topics: [orders]}, recent: 1h, baseline: 7d}",
        ).replace('">="', '"<"'),
        "a drop below the usual rate is a factor between 0 and 1",
    ),
    "window on a ratio part": (
        GOOD_RULE.replace(
            "metric: {kind: count, topics: [orders], window: 10m}",
            "metric: {kind: ratio, window: 30d, numerator: {kind: count, topics: [refunds], "
            "window: 7d}, denominator: {kind: count, topics: [orders]}}",
        ),
        "rules[0].metric.numerator: unknown key(s): window",
    ),
    "a money sum as a requirement": (
        GOOD_RULE + "    requires: [{metric: {kind: sum, field: amount_minor, topics: [orders], "
        "window: 1d}, op: '>=', value: 2}]\n",
        "rules[0].requires[0].metric.kind: a requirement is a count or a distinct count",
    ),
    "a fractional requirement": (
        GOOD_RULE + "    requires: [{metric: {kind: count, topics: [orders], window: 1d}, "
        "op: '>=', value: 1.5}]\n",
        "rules[0].requires[0].value: expected a whole number",
    ),
    "an unknown key in a requirement's metric": (
        GOOD_RULE + "    requires: [{metric: {kind: count, topics: [orders], window: 1d, "
        "recent: 1h}, op: '>=', value: 2}]\n",
        "rules[0].requires[0].metric: unknown key(s): recent",
    ),
    "a requirement without its comparison": (
        GOOD_RULE
        + "    requires: [{metric: {kind: count, topics: [orders], window: 1d}, value: 2}]\n",
        "rules[0].requires[0]: expected {metric, op, value}",
    ),
    "a requirement's window too long": (
        GOOD_RULE + "    requires: [{metric: {kind: count, topics: [orders], window: 60d}, "
        "op: '>=', value: 2}]\n",
        "rules[0].requires[0].metric.window: must be at most 31d",
    ),
    "retention on a younger-than age": (
        GOOD_RULE + "    requires: [{age_of: user, op: '<', value: 1d, retain: 30d}]\n",
        "rules[0].requires[0].retain: only for op >= or >",
    ),
}

MISTAKES.update(MONEY_MISTAKES)


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistakes_are_reported_precisely(name: str) -> None:
    rule, expected = MISTAKES[name]
    text = rule if name in ("yaml syntax", "no rules list") else f"rules:\n{rule}"
    found = errors(text)
    assert any(expected in e for e in found), found


def test_errors_carry_line_numbers_and_all_are_reported() -> None:
    bad_a = GOOD_RULE.replace("severity: high", "severity: urgent")
    bad_b = GOOD_RULE.replace("id: r1", "id: r2").replace("window: 10m", "window: soon")
    found = errors(f"rules:\n{bad_a}{bad_b}")
    assert len(found) == 2
    assert found[0].startswith("line 9:") and "rules[0].severity" in found[0]
    assert found[1].startswith("line 14:") and "rules[1].metric.window" in found[1]


def test_duplicate_rule_ids_are_rejected() -> None:
    found = errors(f"rules:\n{GOOD_RULE}{GOOD_RULE}")
    assert any("duplicate rule id 'r1'" in e for e in found)


def test_actions_requirements_and_compound_keys() -> None:
    text = (
        "rules:\n"
        + GOOD_RULE.replace("entity: user", "entity: [merchant, user]")
        + "    mode: shadow\n    cooldown: 2h\n"
        + "    action: {type: fund_freeze, scope: payouts, duration: 3d}\n"
        + "    requires: [{age_of: merchant, op: '<', value: 30d}]\n"
    )
    (rule,) = parse_rulebook(text).rules
    assert [e.value for e in rule.entity] == ["merchant", "user"]
    assert rule.mode is Mode.SHADOW and rule.cooldown_ms == 7_200_000
    assert rule.action.kind is ActionKind.FUND_FREEZE and rule.action.duration_ms == 259_200_000
    (req,) = rule.requires
    assert req.age_ms == 30 * 86_400_000 and req.first_seen.kind is AggregateKind.FIRST_SEEN


def test_a_count_requirement_reads_an_aggregate_of_the_rules_entity() -> None:
    text = (
        "rules:\n"
        + GOOD_RULE.replace("entity: user", "entity: device")
        + (
            "    requires:\n"
            "      - metric: {kind: distinct, field: user_id, topics: [orders], window: 1d}\n"
            "        op: '>='\n"
            "        value: 2\n"
        )
    )
    (rule,) = parse_rulebook(text).rules
    (req,) = rule.requires
    assert isinstance(req, CountRequirement) and req.value == 2
    spec = req.aggregate
    assert spec.kind is AggregateKind.DISTINCT and spec.field == "user_id"
    assert [e.value for e in spec.entity] == ["device"] and spec.window_ms == 86_400_000
    assert spec in rule.aggregates()  # the store is asked for it with the rule's own
    assert req.label == "distinct_user_id_1d"


def test_rules_sharing_an_aggregate_share_state() -> None:
    text = (
        "rules:\n"
        + GOOD_RULE
        + GOOD_RULE.replace("id: r1", "id: r2").replace("threshold: 5", "threshold: 9")
    )
    rb = parse_rulebook(text)
    assert len(rb.rules) == 2 and len(rb.aggregates()) == 1


def test_balance_surge_and_retained_ages_parse() -> None:
    by_id = {
        r.rule_id: r
        for r in parse_rulebook((REPO / "stream/rulesets/default.yaml").read_text()).rules
    }
    surge = by_id["merchant_gmv_surge_before_payout"].metric
    assert surge.kind.value == "surge" and surge.other is not None
    assert (surge.aggregate.window_ms, surge.other.window_ms) == (86_400_000, 7 * 86_400_000)
    assert surge.min_volume == PerCurrency.of({"EUR": 300_000})
    balance = by_id["payout_exceeds_earnings_30d"].metric
    assert balance.kind.value == "balance" and balance.other is not None
    assert balance.aggregate.bucket_ms == balance.other.bucket_ms == 3_600_000
    # credits reach back one settlement period further than debits
    assert (balance.aggregate.window_ms, balance.other.window_ms) == (31 * DAY_MS, 30 * DAY_MS)
    paid = by_id["merchant_refunds_after_payout_7d"].metric.aggregate
    assert [c.field for c in paid.where] == ["paid_out_at_ms", "order_age_ms"]
    assert paid.where[1].value == 2 * DAY_MS  # a duration, for a *_ms field
    retained = GOOD_RULE + "    requires: [{age_of: order, op: '>=', value: 1d, retain: 35d}]\n"
    (req,) = parse_rulebook("rules:\n" + retained).rules[0].requires
    assert isinstance(req, AgeRequirement)
    assert req.first_seen.entity[0].value == "order" and req.first_seen.window_ms == 35 * DAY_MS
    assert by_id["self_dealing_buyer_pays_from_payout_account"].threshold == 0.0
