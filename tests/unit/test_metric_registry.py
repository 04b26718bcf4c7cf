"""The metric kinds registry: every shipped kind has its evaluator, and a new
kind computed from the existing aggregates is one module plus its
registration.

The `difference` kind below stands for that module: it is defined here, in
the test, and registered by passing the parser a registry that includes it.
No product file knows it, yet a rule file can use it, the plan asks the
store for the aggregates it reads, and the real engine judges it (over the
brute-force store reference of rule_harness) and raises an alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from detectors import engine
from detectors.aggregates import Observation
from detectors.events import Event
from detectors.metric_kinds import REGISTRY
from detectors.metric_kinds.base import WindowedKind, answer
from detectors.rule_parsing import metric_keywords
from detectors.rule_syntax import Parser, aggregate, part, window
from detectors.rulebook import RulebookError, parse_rulebook
from detectors.rules import Evaluator, Evidence, Metric, MetricKind, Observed, Rule
from detectors.rules_entities import EntityType
from detectors.windows import default_bucket_ms
from tests.unit.catalogue_events import MIN, T0, order
from tests.unit.rule_harness import judge


class Difference(WindowedKind):
    """`of` counted over `window` minus the same over the shorter `minus`
    window ending at the same time: the activity before a recent stretch."""

    kind = "difference"
    keywords: Mapping[str, frozenset[str]] = {
        "difference": frozenset({"kind", "of", "window", "minus"})
    }

    def parse(
        self, p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str
    ) -> Metric:
        whole, recent = window(p, raw, "window", path), window(p, raw, "minus", path)
        if recent >= whole:
            raise p.fail(f"{path}.minus", "must be shorter than the window")
        of = part(p, raw, "of", path)
        specs = [
            aggregate(p, of, entity, span, default_bucket_ms(span), f"{path}.of")
            for span in (whole, recent)
        ]
        return Metric(self, specs[0], (specs[1],))

    def value(
        self,
        rule: Rule,
        event: Event,
        main: Observation,
        observed: Observed,
        min_volume: int,
        evidence: Evidence,
    ) -> float | None:
        recent = answer(rule.metric.other, observed)
        if main.value is None or recent is None:
            return None
        evidence.update(whole=main.value, recent=recent)
        return float(main.value - recent)


DIFFERENCE = Difference()
KINDS: Mapping[str, Evaluator] = {**REGISTRY, DIFFERENCE.kind: DIFFERENCE}

BOOK = """\
rules:
  - id: orders_before_the_last_10m
    version: 1
    triggers: [orders]
    entity: user
    metric:
      kind: difference
      of: {kind: count, topics: [orders]}
      window: 1h
      minus: 10m
    compare: ">="
    threshold: 3
    severity: medium
"""


def test_a_registered_kind_is_parsed_planned_and_fires() -> None:
    (rule,) = parse_rulebook(BOOK, "toy.yaml", kinds=KINDS).rules
    assert rule.metric.evaluator is DIFFERENCE
    whole, recent = rule.metric.aggregates()
    assert (whole.window_ms, recent.window_ms) == (60 * MIN, 10 * MIN)

    # Three orders 50 to 20 minutes ago, then two in the last ten minutes.
    history = [order(T0 - m * MIN) for m in (50, 35, 20, 5)]
    (alert,) = [c.alert for c in judge(rule, history, [order(T0)])]
    assert alert.rule_id == "orders_before_the_last_10m" and alert.entity_id == "u1"
    assert alert.observed == 3 and alert.evidence == {"aggregate": "count", "whole": 5, "recent": 2}
    assert alert.window_ms == 60 * MIN

    # Two before the last ten minutes, however many within them: silent.
    quiet = [order(T0 - m * MIN) for m in (50, 35, 9, 6, 3, 1)]
    assert judge(rule, quiet, [order(T0)]) == []

    # The plan asks the store for both windows of every order.
    plan = engine.Plan(parse_rulebook(BOOK, "toy.yaml", kinds=KINDS))
    (group,) = plan.requests(*order(T0))
    assert {s.agg_id for s in group.group.specs} == {whole.agg_id, recent.agg_id}
    assert group.contributions == (1, 1)


def test_a_registered_kind_reports_its_own_mistakes() -> None:
    bad = BOOK.replace("minus: 10m", "minus: 2h")
    with pytest.raises(RulebookError) as info:
        parse_rulebook(bad, "toy.yaml", kinds=KINDS)
    assert [str(e) for e in info.value.errors] == [
        "line 10: rules[0].metric.minus: must be shorter than the window"
    ]
    sum_key = BOOK.replace("      minus: 10m\n", "      minus: 10m\n      field: amount_minor\n")
    with pytest.raises(RulebookError) as info:
        parse_rulebook(sum_key, "toy.yaml", kinds=KINDS)
    assert [str(e) for e in info.value.errors] == [
        "line 7: rules[0].metric: difference does not take: field"
    ]


def test_an_unregistered_kind_is_a_rule_file_mistake() -> None:
    """Registration is what makes the kind known: the shipped registry is
    not changed by the test's."""
    with pytest.raises(RulebookError) as info:
        parse_rulebook(BOOK, "toy.yaml")
    assert [str(e) for e in info.value.errors] == ["line 7: rules[0].metric: unknown key(s): minus"]
    with pytest.raises(RulebookError) as info:
        parse_rulebook(BOOK.replace("      minus: 10m\n", ""), "toy.yaml")
    assert [str(e) for e in info.value.errors] == [
        "line 7: rules[0].metric.kind: 'difference' is not one of "
        "count, sum, distinct, ratio, balance, surge, age"
    ]


def test_every_shipped_kind_has_its_evaluator() -> None:
    assert set(REGISTRY) == set(MetricKind)
    for kind, evaluator in REGISTRY.items():
        assert evaluator.kind is kind


def test_two_kinds_cannot_claim_one_keyword() -> None:
    class Count(Difference):
        kind = "another_count"
        keywords: Mapping[str, frozenset[str]] = {"count": frozenset({"kind"})}

    with pytest.raises(ValueError, match="both parse 'count'"):
        metric_keywords({**REGISTRY, "another_count": Count()})
