"""A merchant's account-health score from its violations and rates: pure,
time an argument, so the live worker and the backtest score the same
events the same way.

Score = 1000 - the points of active violations - the rate penalties,
clamped to 0..1000 (detectors.health_model says how much each costs).
Nothing else moves it: a merchant's volume only gates whether a rate is
judged, never adds points. A merchant below the model's order volume with
no active violation is `insufficient_data`, whatever the arithmetic gives:
a new merchant is unknown, not bad. Confirmed violations count at any
volume: a bust-out at a days-old merchant must not hide behind the gate.

Every snapshot explains itself: each component with its numerator,
denominator, window and points, and the three reasons that cost the most,
with the alert or freeze ids behind them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from detectors.health_model import Band, HealthModel, RateKind
from detectors.rules import Severity

__all__ = [
    "MAX_SCORE",
    "VIOLATIONS",
    "Component",
    "HealthInputs",
    "HealthSnapshot",
    "RateCounts",
    "Reason",
    "Violation",
    "ViolationSource",
    "active_points",
    "score",
    "should_emit",
]

MAX_SCORE = 1000
TOP_REASONS = 3
VIOLATIONS = "violations"


class ViolationSource(StrEnum):
    FREEZE = "freeze"  # a freeze not released as a false positive
    VERDICT = "verdict"  # an analyst's true-positive verdict
    BLOCK_LIST = "block_list"  # the merchant was put on the block list


@dataclass(frozen=True, slots=True)
class Violation:
    violation_id: str  # the freeze, verdict or list entry it comes from
    source: ViolationSource
    severity: Severity
    at_ms: int  # event time it was confirmed
    evidence: tuple[str, ...] = ()  # alert and freeze ids
    rule_id: str | None = None
    released_at_ms: int | None = None  # released (false positive, appeal upheld)

    def active(self, as_of_ms: int, expiry_ms: int) -> bool:
        if self.at_ms > as_of_ms or as_of_ms >= self.at_ms + expiry_ms:
            return False
        return self.released_at_ms is None or self.released_at_ms > as_of_ms


@dataclass(frozen=True, slots=True)
class RateCounts:
    numerator: int
    denominator: int


@dataclass(frozen=True, slots=True)
class HealthInputs:
    merchant_id: str
    orders: int  # in the model's volume window
    violations: Sequence[Violation]
    rates: Mapping[RateKind, RateCounts]


@dataclass(frozen=True, slots=True)
class Component:
    name: str  # a RateKind's value, or "violations"
    value: float | None  # the rate; None when not judged (below its volume gate)
    numerator: int
    denominator: int
    window_ms: int
    points: int  # taken off the score


@dataclass(frozen=True, slots=True)
class Reason:
    text: str
    points: int
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    merchant_id: str
    score: int
    band: Band
    components: tuple[Component, ...]
    reasons: tuple[Reason, ...]
    score_model_version: str
    as_of_ms: int


def active_points(
    violations: Sequence[Violation], model: HealthModel, as_of_ms: int
) -> list[tuple[Violation, int]]:
    """Each violation that still counts at `as_of_ms`, with its points. A
    freeze and an analyst's verdict on the alert that raised it are one
    violation confirmed twice: they count once, at the higher points."""
    by_alert: dict[str, tuple[Violation, int]] = {}
    for v in violations:
        if not v.active(as_of_ms, model.expiry_of(v.severity)):
            continue
        points = model.points.get(v.severity, 0)
        key = v.evidence[0] if v.evidence else v.violation_id
        held = by_alert.get(key)
        if held is None or points > held[1]:
            by_alert[key] = (v, points)
    return list(by_alert.values())


def score(inputs: HealthInputs, model: HealthModel, as_of_ms: int) -> HealthSnapshot:
    active = active_points(inputs.violations, model, as_of_ms)
    violation_points = sum(p for _, p in active)
    components = [
        Component(VIOLATIONS, None, len(active), len(active), model.expiry_ms, violation_points)
    ]
    reasons = [_violation_reason(v, p) for v, p in active if p]
    for rate in model.rates:
        counts = inputs.rates.get(rate.kind)
        if counts is None:
            continue
        points = rate.penalty(counts.numerator, counts.denominator)
        judged = counts.denominator >= rate.min_volume and counts.denominator > 0
        value = counts.numerator / counts.denominator if judged else None
        components.append(
            Component(
                rate.kind.value,
                value,
                counts.numerator,
                counts.denominator,
                rate.window_ms,
                points,
            )
        )
        if points and value is not None:
            reasons.append(_rate_reason(rate.kind, value, counts, points))
    total = MAX_SCORE - sum(c.points for c in components)
    value = max(0, min(MAX_SCORE, total))
    if inputs.orders < model.min_orders and not active:
        band = Band.INSUFFICIENT_DATA
    else:
        band = model.band_of(value)
    # Most points first; ties by what they cite, so the order of the ledger
    # (or of a batch) never reorders a published snapshot.
    reasons.sort(key=lambda r: (-r.points, r.evidence, r.text))
    return HealthSnapshot(
        inputs.merchant_id,
        value,
        band,
        tuple(components),
        tuple(reasons[:TOP_REASONS]),
        model.score_model_version,
        as_of_ms,
    )


def _violation_reason(v: Violation, points: int) -> Reason:
    rule = f" by rule {v.rule_id}" if v.rule_id else ""
    text = f"{v.severity.value} {v.source.value}{rule} ({v.violation_id})"
    return Reason(text, points, (v.violation_id, *v.evidence))


def _rate_reason(kind: RateKind, value: float, counts: RateCounts, points: int) -> Reason:
    text = f"{kind.value} {value:.1%} ({counts.numerator} of {counts.denominator})"
    return Reason(text, points, ())


def should_emit(
    previous: HealthSnapshot | None, current: HealthSnapshot, model: HealthModel
) -> bool:
    """Publish a new snapshot when the band changes or the score moves by
    the model's step, at most once per `emit_interval` of event time; the
    first snapshot of a merchant is always published."""
    if previous is None:
        return True
    if current.as_of_ms - previous.as_of_ms < model.emit_interval_ms:
        return False
    if current.band is not previous.band:
        return True
    return abs(current.score - previous.score) >= model.emit_step
