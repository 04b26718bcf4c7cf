"""`age`: how long before the event the entity was first seen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.aggregates import AggregateKind, AggregateSpec, Observation
from detectors.counted import ReportFloor
from detectors.durations import format_duration_ms
from detectors.events import Event, Topic
from detectors.metric_kinds.base import no_volume
from detectors.money import PerCurrency
from detectors.rule_syntax import Parser
from detectors.rules import Comparison, Evidence, Metric, MetricKind, Observed, Rule
from detectors.rules_entities import EntityType
from detectors.timestamps import format_rfc3339_ms

__all__ = ["EVALUATOR", "Age"]


class Age:
    kind = MetricKind.AGE
    keywords: Mapping[str, frozenset[str]] = {"age": frozenset({"kind", "topics"})}
    fractional = False

    def parse(
        self, p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str
    ) -> Metric:
        """The first sighting in `topics` (default: any topic)."""
        topics = p.topics(raw["topics"], f"{path}.topics") if "topics" in raw else frozenset(Topic)
        return Metric(self, AggregateSpec(AggregateKind.FIRST_SEEN, topics, entity))

    def threshold(
        self, p: Parser, raw: Any, metric: Metric, comparison: Comparison, path: str
    ) -> float | PerCurrency:
        """A duration. `>= 0s` is meaningful: "was seen at all before this event"."""
        return 0.0 if raw in (0, "0", "0s") else float(p.duration(raw, path))

    def volume(self, p: Parser, raw: Any, metric: Metric, path: str) -> int | PerCurrency:
        raise no_volume(p, self.kind, path)

    def value(
        self,
        rule: Rule,
        event: Event,
        main: Observation,
        observed: Observed,
        min_volume: int,
        evidence: Evidence,
    ) -> float | None:
        first_seen = main.value
        if first_seen is None or first_seen < 0:  # never seen, not even by this event
            return None
        age = event.occurred_at_ms - first_seen
        evidence.update(first_seen_at=format_rfc3339_ms(first_seen), age=format_duration_ms(age))
        return float(age)

    def span(self, metric: Metric, main: Observation, event: Event) -> tuple[int, int]:
        """From the first sighting to the event."""
        assert main.value is not None
        end = event.occurred_at_ms
        return min(main.value, end), end

    def report_floor(self, rule: Rule) -> ReportFloor | None:
        """An age counts no events."""
        return None


EVALUATOR = Age()
