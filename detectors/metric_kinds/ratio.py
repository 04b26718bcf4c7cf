"""`ratio`: a numerator over a denominator, both over the same window."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.aggregates import Observation
from detectors.counted import ReportFloor, floor_of
from detectors.events import Event
from detectors.metric_kinds.base import WindowedKind, answer
from detectors.money import PerCurrency
from detectors.rule_syntax import Parser, aggregate, part, resolution, window
from detectors.rules import Comparison, Evidence, Metric, MetricKind, Observed, Rule
from detectors.rules_entities import EntityType

__all__ = ["EVALUATOR", "Ratio"]


class Ratio(WindowedKind):
    kind = MetricKind.RATIO
    keywords: Mapping[str, frozenset[str]] = {
        "ratio": frozenset({"kind", "window", "resolution", "numerator", "denominator"})
    }
    fractional = True

    def parse(
        self, p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str
    ) -> Metric:
        span = window(p, raw, "window", path)
        bucket = resolution(p, raw, span, path)
        specs = []
        for side in ("numerator", "denominator"):
            specs.append(
                aggregate(p, part(p, raw, side, path), entity, span, bucket, f"{path}.{side}")
            )
        return Metric(self, specs[0], (specs[1],))

    def money_threshold(self, metric: Metric) -> bool:
        """Money on one side only (money over money is a plain fraction, like
        count over count)."""
        assert metric.other is not None
        return metric.aggregate.per_currency != metric.other.per_currency

    def money_volume(self, metric: Metric) -> bool:
        """The volume is the denominator's."""
        assert metric.other is not None
        return metric.other.per_currency

    def threshold(
        self, p: Parser, raw: Any, metric: Metric, comparison: Comparison, path: str
    ) -> float | PerCurrency:
        limit = super().threshold(p, raw, metric, comparison, path)
        if isinstance(limit, float) and not 0 <= limit <= 1 and _like_for_like(metric):
            raise p.fail(path, "a ratio threshold is a fraction between 0 and 1")
        return limit

    def value(
        self,
        rule: Rule,
        event: Event,
        main: Observation,
        observed: Observed,
        min_volume: int,
        evidence: Evidence,
    ) -> float | None:
        assert main.value is not None
        denominator = answer(rule.metric.other, observed)
        if denominator is None or denominator <= 0 or denominator < min_volume:
            return None
        evidence.update(numerator=main.value, denominator=denominator, min_volume=min_volume)
        return main.value / denominator

    def report_floor(self, rule: Rule) -> ReportFloor | None:
        """A rising ratio fires only with numerator >= threshold x
        min_volume (the denominator is at least min_volume), so its counted
        events are read from there, not from the first event counted: per
        currency the rule judges (`Rule.limits`), and the lowest of them for
        a numerator kept in one key for every currency."""
        if super().report_floor(rule) is None:
            return None
        currencies = rule.currencies
        if currencies is None:
            return floor_of(_plain(rule.threshold) * _plain(rule.metric.min_volume))
        per = {}
        for currency in currencies:
            limits = rule.limits(currency)
            if limits is not None:
                per[currency] = limits[0] * limits[1]
        if not rule.metric.aggregate.per_currency:
            return floor_of(min(per.values(), default=1))
        return floor_of(PerCurrency.of(per))


def _plain(limit: float | PerCurrency) -> float:
    assert not isinstance(limit, PerCurrency)  # Rule.currencies is None: no money limit
    return limit


def _like_for_like(metric: Metric) -> bool:
    """Count over count or sum over the same field: a share, so at most 1 is
    meant (a threshold of 50 is a typo for 0.5). Count over distinct values
    (orders per buyer) is a rate and may be any size."""
    other = metric.other
    assert other is not None
    return metric.aggregate.kind is other.kind and metric.aggregate.field == other.field


EVALUATOR = Ratio()
