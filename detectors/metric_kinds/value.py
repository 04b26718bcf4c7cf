"""`count`, `sum` and `distinct`: one aggregate's value, compared as it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.aggregates import Observation
from detectors.counted import ReportFloor, floor_of, higher
from detectors.events import Event
from detectors.metric_kinds.base import WindowedKind
from detectors.rule_syntax import Parser, windowed_aggregate
from detectors.rules import Evidence, Metric, MetricKind, Observed, Rule
from detectors.rules_entities import EntityType

__all__ = ["EVALUATOR", "Value"]

_KEYS = frozenset({"kind", "topics", "window", "resolution", "where"})


class Value(WindowedKind):
    kind = MetricKind.VALUE
    keywords: Mapping[str, frozenset[str]] = {
        "count": _KEYS,
        "sum": _KEYS | {"field"},
        "distinct": _KEYS | {"field"},
    }

    def parse(
        self, p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str
    ) -> Metric:
        return Metric(self, windowed_aggregate(p, raw, entity, path))

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
        evidence["value"] = main.value
        if min_volume and main.value < min_volume:
            return None
        return float(main.value)

    def report_floor(self, rule: Rule) -> ReportFloor | None:
        """The threshold itself (and the `min_volume`, when higher)."""
        if super().report_floor(rule) is None:
            return None
        floor = floor_of(rule.threshold)
        volume = rule.metric.min_volume
        if volume:
            # A value must reach both: the higher of the two is the floor.
            floor = higher(floor, floor_of(volume))
        return floor


EVALUATOR = Value()
