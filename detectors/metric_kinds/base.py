"""What most metric kinds share: the defaults of a kind read from windowed
aggregates, and small helpers for reading thresholds and answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors import rule_money
from detectors.aggregates import AggregateKind, AggregateSpec, Observation
from detectors.counted import ReportFloor, floor_of
from detectors.events import Event
from detectors.money import PerCurrency
from detectors.rule_syntax import Invalid, Parser
from detectors.rules import Comparison, Metric, Rule

__all__ = ["COUNTED", "WindowedKind", "answer", "no_volume", "plain_threshold", "rising"]


class WindowedKind:
    """Defaults for a kind whose value comes from windowed aggregates (every
    shipped kind but the age): integer values; a threshold and a
    `min_volume` that are money, per currency, when the main aggregate is a
    sum; the main aggregate's window as the alert's. A subclass adds `kind`,
    `keywords`, `parse` and `value` (see detectors.rules.Evaluator) and
    overrides what differs."""

    fractional = False

    def money_threshold(self, metric: Metric) -> bool:
        return metric.aggregate.per_currency

    def money_volume(self, metric: Metric) -> bool:
        return metric.aggregate.per_currency

    def threshold(
        self, p: Parser, raw: Any, metric: Metric, comparison: Comparison, path: str
    ) -> float | PerCurrency:
        return plain_threshold(p, raw, self.money_threshold(metric), path)

    def volume(self, p: Parser, raw: Any, metric: Metric, path: str) -> int | PerCurrency:
        return rule_money.volume(p, raw, self.money_volume(metric), path)

    def span(self, metric: Metric, main: Observation, event: Event) -> tuple[int, int]:
        end = main.window_end_ms
        return end - (metric.aggregate.window_ms or 0), end

    def report_floor(self, rule: Rule) -> ReportFloor | None:
        """A kind that fires on a rise needs its main aggregate to have
        counted something (its own limit may say more); one that fires on
        a fall may fire on nothing counted."""
        if rule.metric.aggregate.kind not in COUNTED or not rising(rule.comparison):
            return None
        return floor_of(1)


COUNTED = frozenset({AggregateKind.COUNT, AggregateKind.SUM})


def rising(comparison: Comparison) -> bool:
    return comparison in (Comparison.GE, Comparison.GT)


def plain_threshold(p: Parser, raw: Any, money: bool, path: str) -> float | PerCurrency:
    """A number, or an amount per currency when the threshold is `money`."""
    limit = rule_money.threshold(p, raw, money, path)
    if limit is not None:
        return limit
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise p.fail(path, "expected a number")
    return float(raw)


def no_volume(p: Parser, kind: str, path: str) -> Invalid:
    """The mistake of a `min_volume` on a kind that has no volume to require."""
    return p.fail(path, f"{kind} metrics have no volume to require")


def answer(spec: AggregateSpec | None, observed: Mapping[str, Observation]) -> int | None:
    """The value the store answered for `spec`; None when it was not asked
    (the event lacks the entity) or the event came too late for it."""
    if spec is None:
        return None
    found = observed.get(spec.agg_id)
    return None if found is None else found.value
