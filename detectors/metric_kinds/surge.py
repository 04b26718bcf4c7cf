"""`surge`: the rate over a recent window against the usual rate, over the
rest of a longer baseline window ending at the same time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.aggregates import AggregateKind, Observation
from detectors.counted import ReportFloor, floor_of
from detectors.durations import format_duration_ms
from detectors.events import Event
from detectors.metric_kinds.base import WindowedKind, answer
from detectors.money import PerCurrency
from detectors.rule_syntax import Parser, aggregate, part, window
from detectors.rules import (
    AgeRequirement,
    Comparison,
    Evidence,
    Metric,
    MetricKind,
    Observed,
    Rule,
)
from detectors.rules_entities import EntityType
from detectors.windows import default_bucket_ms

__all__ = ["EVALUATOR", "Surge"]


class Surge(WindowedKind):
    kind = MetricKind.SURGE
    keywords: Mapping[str, frozenset[str]] = {
        "surge": frozenset({"kind", "of", "recent", "baseline"})
    }
    fractional = True

    def parse(
        self, p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str
    ) -> Metric:
        """`of` counted over a `recent` window and over a longer `baseline`
        window ending at the same time; the baseline must leave room for
        history."""
        recent = window(p, raw, "recent", path)
        baseline = window(p, raw, "baseline", path)
        if baseline < 2 * recent:
            raise p.fail(f"{path}.baseline", "must be at least twice the recent window")
        of = part(p, raw, "of", path)
        specs = []
        for key, span in (("recent", recent), ("baseline", baseline)):
            try:
                bucket = default_bucket_ms(span)
            except ValueError as exc:
                raise p.fail(f"{path}.{key}", str(exc)) from None
            specs.append(aggregate(p, of, entity, span, bucket, f"{path}.of"))
        if specs[0].kind is AggregateKind.DISTINCT:
            raise p.fail(f"{path}.of.kind", "a surge compares counts or sums, not distinct counts")
        return Metric(self, specs[0], (specs[1],))

    def money_threshold(self, metric: Metric) -> bool:
        """A factor, even between sums of money."""
        return False

    def threshold(
        self, p: Parser, raw: Any, metric: Metric, comparison: Comparison, path: str
    ) -> float | PerCurrency:
        limit = super().threshold(p, raw, metric, comparison, path)
        assert isinstance(limit, float)
        rising = comparison in (Comparison.GE, Comparison.GT)
        if rising and limit <= 1:
            raise p.fail(
                path, "a surge threshold is a factor above 1 (e.g. 5 = five times the usual)"
            )
        if not rising and not 0 < limit < 1:
            raise p.fail(
                path, "a drop below the usual rate is a factor between 0 and 1 (0.2 = a fifth)"
            )
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
        """Rate in the recent window over the rate in the rest of the baseline window.

        The baseline excludes the recent window, so a surge does not dilute
        its own baseline, and it covers only the time the entity has existed
        (when the rule reads its age): a 2-day-old campaign's history is 2
        days, not a week of zeros that would inflate every peak 3.5-fold.
        That life must hold at least one recent window before the recent
        one, as the baseline window itself must: a merchant a day and two
        hours old would otherwise be judged against the two quiet hours of
        its opening night. Without enough earlier activity there is no
        baseline to compare with: the metric is undefined (a rule on young
        entities covers that case), not infinite."""
        recent = main.value
        metric = rule.metric
        baseline = answer(metric.other, observed)
        assert recent is not None and metric.other is not None
        if baseline is None:
            return None
        recent_ms = metric.aggregate.window_ms or 0
        baseline_ms = metric.other.window_ms or 0
        history_ms = _history_ms(rule, event, observed)
        if history_ms is not None:
            baseline_ms = min(baseline_ms, history_ms)
        earlier = baseline - recent
        if recent < min_volume or earlier <= 0 or baseline_ms < 2 * recent_ms:
            return None
        earlier_rate = earlier / (baseline_ms - recent_ms)
        evidence.update(
            recent=recent,
            recent_window=format_duration_ms(recent_ms),
            baseline_window=format_duration_ms(metric.other.window_ms or 0),
            history_used=format_duration_ms(baseline_ms),
            baseline_per_recent_window=round(earlier_rate * recent_ms, 3),
            min_volume=min_volume,
        )
        return (recent / recent_ms) / earlier_rate

    def report_floor(self, rule: Rule) -> ReportFloor | None:
        """A surge needs its recent value to reach the `min_volume`."""
        if super().report_floor(rule) is None:
            return None
        volume = rule.metric.min_volume
        return floor_of(volume) if volume else floor_of(1)


def _history_ms(rule: Rule, event: Event, observed: Mapping[str, Observation]) -> int | None:
    """How long the metric's entity has existed, when the rule requires an age
    of that same entity (so its first sighting was read), else None."""
    for req in rule.requires:
        if (
            isinstance(req, AgeRequirement)
            and req.first_seen.entity == rule.metric.aggregate.entity
        ):
            seen = observed.get(req.first_seen.agg_id)
            if seen is not None and seen.value is not None and seen.value >= 0:
                return event.occurred_at_ms - seen.value
    return None


EVALUATOR = Surge()
