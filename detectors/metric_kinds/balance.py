"""`balance`: credits minus debits (earnings minus refunds and payouts)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.aggregates import Observation
from detectors.events import Event
from detectors.metric_kinds.base import WindowedKind, no_volume
from detectors.money import PerCurrency
from detectors.rule_syntax import Parser, aggregate, part, resolution, window
from detectors.rules import Evidence, Metric, MetricKind, Observed, Rule
from detectors.rules_entities import EntityType

__all__ = ["EVALUATOR", "Balance"]


class Balance(WindowedKind):
    kind = MetricKind.BALANCE
    keywords: Mapping[str, frozenset[str]] = {
        "balance": frozenset({"kind", "window", "resolution", "credit", "debit"})
    }

    def parse(
        self, p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str
    ) -> Metric:
        """A side may have its own window: credits must reach back one
        settlement period further than debits, or the payouts at the
        window's start (which paid for earnings before it) look like money
        paid out without earnings."""
        span = window(p, raw, "window", path)
        bucket = resolution(p, raw, span, path)
        specs = []
        for side in ("credit", "debit"):
            q = f"{path}.{side}"
            raw_part = part(p, raw, side, path, also=frozenset({"window"}))
            part_window, part_bucket = span, bucket
            if "window" in raw_part:
                part_window = window(p, raw_part, "window", q)
                part_bucket = resolution(p, {**raw_part, **raw}, part_window, q)
            specs.append(aggregate(p, raw_part, entity, part_window, part_bucket, q))
        if specs[0].per_currency != specs[1].per_currency:
            raise p.fail(path, "a balance subtracts money from money, or counts from counts")
        return Metric(self, specs[0], (specs[1],))

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
        assert main.value is not None and rule.metric.other is not None
        debits = observed.get(rule.metric.other.agg_id)
        if debits is None or debits.value is None:
            return None
        if main.window_end_ms != debits.window_end_ms:
            # A late or redelivered event is counted on the busiest window
            # around it, which later events helped build (a redelivered payout
            # meets the next day's payout in its debits); credits are read at
            # its own time. Balancing two different windows would be
            # nonsense, so the balance is undefined: no decision.
            return None
        evidence.update(credits=main.value, debits=debits.value)
        return float(main.value - debits.value)


EVALUATOR = Balance()
