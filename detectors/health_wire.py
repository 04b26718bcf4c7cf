"""The merchant-health records as published: a full snapshot per merchant on
the compacted `merchant-health` topic, and each band change on
`merchant-health-changes` (contract/schemas/merchant-health*.schema.json).

A snapshot carries what re-scoring it needs (its volume and each rate's
counts), so a release can re-score a merchant at once from its last
snapshot, without an event. Everything but `computed_at` (the wall clock
of the worker that published it) is a function of the events and the
model: the live worker and the backtest publish the same snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from detectors.health_model import Band, HealthModel, RateKind
from detectors.health_score import VIOLATIONS, HealthSnapshot, RateCounts
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms

__all__ = ["SCHEMA_VERSION", "LastSnapshot", "band_change_wire", "read_last", "snapshot_wire"]

SCHEMA_VERSION = 1
_RATE_NAMES = frozenset(k.value for k in RateKind)


def _number(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def snapshot_wire(
    snap: HealthSnapshot,
    model: HealthModel,
    orders: int,
    ruleset_version: str,
    computed_at_ms: int,
) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "merchant_id": snap.merchant_id,
        "score": snap.score,
        "band": snap.band.value,
        "volume": {
            "orders": orders,
            "min_orders": model.min_orders,
            "window_ms": model.volume_window_ms,
        },
        "components": [
            {
                "name": c.name,
                "value": _number(c.value),
                "numerator": c.numerator,
                "denominator": c.denominator,
                "window_ms": c.window_ms,
                "points": c.points,
            }
            for c in snap.components
        ],
        "reasons": [
            {"text": r.text, "points": r.points, "evidence": list(r.evidence)} for r in snap.reasons
        ],
        "score_model_version": snap.score_model_version,
        "ruleset_version": ruleset_version,
        "as_of": format_rfc3339_ms(snap.as_of_ms),
        "computed_at": format_rfc3339_ms(computed_at_ms),
    }


def band_change_wire(
    snapshot: Mapping[str, Any], previous_band: Band | None, previous_score: int | None
) -> dict[str, Any]:
    """A `merchant-health-changes` record: the band moved (the first band a
    merchant gets counts as a change from none)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "merchant_id": snapshot["merchant_id"],
        "band": snapshot["band"],
        "previous_band": previous_band.value if previous_band is not None else None,
        "score": snapshot["score"],
        "previous_score": previous_score,
        "reasons": snapshot["reasons"],
        "score_model_version": snapshot["score_model_version"],
        "ruleset_version": snapshot["ruleset_version"],
        "as_of": snapshot["as_of"],
        "computed_at": snapshot["computed_at"],
    }


@dataclass(frozen=True, slots=True)
class LastSnapshot:
    """What re-scoring needs of a published snapshot (a release re-scores a
    merchant from its last one, without an event)."""

    score: int
    band: Band
    as_of_ms: int
    score_model_version: str
    orders: int
    rates: Mapping[RateKind, RateCounts]


def read_last(wire: Mapping[str, Any]) -> LastSnapshot:
    rates = {
        RateKind(c["name"]): RateCounts(int(c["numerator"]), int(c["denominator"]))
        for c in wire["components"]
        if c["name"] != VIOLATIONS and c["name"] in _RATE_NAMES
    }
    return LastSnapshot(
        int(wire["score"]),
        Band(wire["band"]),
        parse_rfc3339_ms(wire["as_of"]),
        str(wire["score_model_version"]),
        int(wire["volume"]["orders"]),
        rates,
    )
