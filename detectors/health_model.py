"""The merchant account-health model: what lowers a merchant's score, by how
much, and where the bands are. Data, not code: it is the `health` section of
a rule file, versioned by its own `score_model_version` so a snapshot says
which model scored it (a threshold change re-scores every merchant, and the
people reading a score need to know which scale it is on).

Two layers lower a score from 1000:
- **violations**: points per confirmed violation, by severity, each expiring
  (90 days by default, 180 for severe ones, as marketplaces' penalty points
  do); a released freeze (false positive, appeal upheld) takes its points
  back at once;
- **rates**: a penalty per performance rate (refund rate, alert rate, ...),
  zero up to a `good` rate, the component's full `points` from a `bad` rate
  on, linear between, and only once the rate's denominator reaches its
  `min_volume`: a new merchant with 2 orders and 1 refund is not "50 %
  refunds", it is not yet known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from detectors.durations import parse_duration_ms
from detectors.errors import ConfigError
from detectors.rules import Severity

__all__ = [
    "DEFAULT_MODEL",
    "Band",
    "HealthModel",
    "RateKind",
    "RateModel",
    "parse_health_model",
]

DAY_MS = 86_400_000


class Band(StrEnum):
    HEALTHY = "healthy"
    AT_RISK = "at_risk"
    CRITICAL = "critical"
    INSUFFICIENT_DATA = "insufficient_data"


class RateKind(StrEnum):
    """The performance rates a merchant is measured on; each is a numerator
    over a denominator in one event-time window."""

    REFUND_RATE = "refund_rate"  # refunds / orders
    MERCHANT_REFUND_RATE = "merchant_refund_rate"  # merchant-initiated refunds / orders
    REFUNDS_AFTER_PAYOUT = "refunds_after_payout"  # refunds of paid-out orders / orders
    SUBSIDY_CONCENTRATION = "subsidy_concentration"  # top buyers' subsidised orders / all
    CANCELLATION_RATE = "cancellation_rate"  # cancelled orders / orders
    ALERT_RATE = "alert_rate"  # alerts / orders (shown per 100 orders)


@dataclass(frozen=True, slots=True)
class RateModel:
    kind: RateKind
    window_ms: int
    good: float  # at or below: no penalty
    bad: float  # at or above: the full points
    points: int
    min_volume: int  # denominators below this: the rate is not judged

    def penalty(self, numerator: int, denominator: int) -> int:
        """Points this rate takes off; 0 below the volume gate."""
        if denominator < self.min_volume or denominator <= 0:
            return 0
        rate = numerator / denominator
        if rate <= self.good:
            return 0
        if rate >= self.bad:
            return self.points
        return round(self.points * (rate - self.good) / (self.bad - self.good))


@dataclass(frozen=True, slots=True)
class HealthModel:
    score_model_version: str
    healthy_from: int  # score at or above: healthy
    at_risk_from: int  # at or above (below healthy_from): at risk; below: critical
    points: Mapping[Severity, int]  # per confirmed violation
    expiry_ms: int  # a violation's points last this long
    severe_expiry_ms: int  # for violations at or above `severe`
    severe: Severity
    rates: tuple[RateModel, ...]
    min_orders: int  # orders in `volume_window_ms` below which a merchant is not scored
    volume_window_ms: int
    emit_step: int  # a score change this big is published even within a band
    emit_interval_ms: int  # at most one snapshot per merchant per interval (event time)
    # Rules gated on the band read it as of this long before their event
    # (detectors.health_bands says why).
    band_delay_ms: int = 3_600_000

    def band_of(self, score: int) -> Band:
        if score >= self.healthy_from:
            return Band.HEALTHY
        if score >= self.at_risk_from:
            return Band.AT_RISK
        return Band.CRITICAL

    def expiry_of(self, severity: Severity) -> int:
        if severity.rank >= self.severe.rank:
            return self.severe_expiry_ms
        return self.expiry_ms


def _rate(
    kind: RateKind, window_d: int, good: float, bad: float, points: int, vol: int
) -> RateModel:
    return RateModel(kind, window_d * DAY_MS, good, bad, points, vol)


DEFAULT_MODEL = HealthModel(
    score_model_version="health-1",
    healthy_from=800,
    at_risk_from=500,
    points={Severity.LOW: 25, Severity.MEDIUM: 75, Severity.HIGH: 200, Severity.CRITICAL: 400},
    expiry_ms=90 * DAY_MS,
    severe_expiry_ms=180 * DAY_MS,
    severe=Severity.HIGH,
    rates=(
        _rate(RateKind.REFUND_RATE, 30, 0.05, 0.25, 250, 20),
        _rate(RateKind.MERCHANT_REFUND_RATE, 30, 0.02, 0.15, 200, 20),
        _rate(RateKind.REFUNDS_AFTER_PAYOUT, 30, 0.01, 0.10, 300, 20),
        _rate(RateKind.SUBSIDY_CONCENTRATION, 30, 0.30, 0.80, 250, 20),
        _rate(RateKind.CANCELLATION_RATE, 30, 0.05, 0.30, 150, 20),
        _rate(RateKind.ALERT_RATE, 30, 0.02, 0.10, 200, 20),
    ),
    min_orders=10,
    volume_window_ms=30 * DAY_MS,
    emit_step=25,
    emit_interval_ms=60_000,
)


def parse_health_model(raw: Any, where: str = "health") -> HealthModel:
    """The `health` section of a rule file over the defaults; every key
    optional except `score_model_version`, which must change whenever the
    numbers do. Raises ConfigError naming the key at fault."""
    if not isinstance(raw, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(raw).__name__}")
    d = DEFAULT_MODEL
    known = {
        "score_model_version", "bands", "points", "expiry", "severe_expiry", "severe",
        "rates", "min_orders", "volume_window", "emit_step", "emit_interval", "band_delay",
    }  # fmt: skip
    if unknown := sorted(set(raw) - known):
        raise ConfigError(f"{where}.{unknown[0]}", f"unknown key; known: {sorted(known)}")
    version = raw.get("score_model_version")
    if not isinstance(version, str) or not version.strip():
        raise ConfigError(f"{where}.score_model_version", "required: a non-empty string")
    healthy, at_risk = _bands(raw.get("bands", {}), where, d)
    return HealthModel(
        score_model_version=version,
        healthy_from=healthy,
        at_risk_from=at_risk,
        points=_points(raw.get("points", {}), where, d),
        expiry_ms=_duration(raw, "expiry", where, d.expiry_ms),
        severe_expiry_ms=_duration(raw, "severe_expiry", where, d.severe_expiry_ms),
        severe=_severity(raw.get("severe", d.severe.value), f"{where}.severe"),
        rates=_rates(raw.get("rates", {}), where, d),
        min_orders=_count(raw.get("min_orders", d.min_orders), f"{where}.min_orders"),
        volume_window_ms=_duration(raw, "volume_window", where, d.volume_window_ms),
        emit_step=_count(raw.get("emit_step", d.emit_step), f"{where}.emit_step"),
        emit_interval_ms=_duration(raw, "emit_interval", where, d.emit_interval_ms),
        band_delay_ms=_duration(raw, "band_delay", where, d.band_delay_ms),
    )


def _bands(raw: Any, where: str, d: HealthModel) -> tuple[int, int]:
    if not isinstance(raw, Mapping) or set(raw) - {"healthy", "at_risk"}:
        raise ConfigError(f"{where}.bands", "expected {healthy: N, at_risk: N}")
    healthy = _count(raw.get("healthy", d.healthy_from), f"{where}.bands.healthy")
    at_risk = _count(raw.get("at_risk", d.at_risk_from), f"{where}.bands.at_risk")
    if not 0 < at_risk < healthy <= 1000:
        raise ConfigError(f"{where}.bands", "need 0 < at_risk < healthy <= 1000")
    return healthy, at_risk


def _points(raw: Any, where: str, d: HealthModel) -> Mapping[Severity, int]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.points", "expected a mapping of severity to points")
    points = dict(d.points)
    for name, value in raw.items():
        severity = _severity(name, f"{where}.points")
        points[severity] = _count(value, f"{where}.points.{name}")
    return points


def _rates(raw: Any, where: str, d: HealthModel) -> tuple[RateModel, ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.rates", "expected a mapping of rate name to its settings")
    by_kind = {r.kind: r for r in d.rates}
    for name, spec in raw.items():
        try:
            kind = RateKind(name)
        except ValueError:
            raise ConfigError(
                f"{where}.rates.{name}", f"unknown rate; known: {[k.value for k in RateKind]}"
            ) from None
        by_kind[kind] = _rate_model(kind, spec, f"{where}.rates.{name}", by_kind[kind])
    return tuple(by_kind[k] for k in RateKind if k in by_kind)


def _rate_model(kind: RateKind, spec: Any, where: str, base: RateModel) -> RateModel:
    if not isinstance(spec, Mapping) or set(spec) - {
        "window",
        "good",
        "bad",
        "points",
        "min_volume",
    }:
        raise ConfigError(where, "expected {window, good, bad, points, min_volume}")
    good = _fraction(spec.get("good", base.good), f"{where}.good")
    bad = _fraction(spec.get("bad", base.bad), f"{where}.bad")
    if not good < bad:
        raise ConfigError(where, f"need good < bad, got {good} and {bad}")
    return RateModel(
        kind,
        _duration(spec, "window", where, base.window_ms),
        good,
        bad,
        _count(spec.get("points", base.points), f"{where}.points"),
        _count(spec.get("min_volume", base.min_volume), f"{where}.min_volume"),
    )


def _duration(raw: Mapping[str, Any], key: str, where: str, default: int) -> int:
    value = raw.get(key)
    if value is None:
        return default
    try:
        ms = parse_duration_ms(value)
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}", str(exc)) from None
    if ms <= 0:
        raise ConfigError(f"{where}.{key}", "must be positive")
    return ms


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(where, f"expected a non-negative integer, got {value!r}")
    return value


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigError(where, f"expected a fraction between 0 and 1, got {value!r}")
    return float(value)


def _severity(value: Any, where: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        raise ConfigError(where, f"unknown severity {value!r}") from None
