"""The merchant-health confusion table: a merchant's band is its last
snapshot at or before the label's judging time; none reads as
insufficient_data, never as the expected band."""

from __future__ import annotations

from pathlib import Path

import orjson

from detectors.health_model import Band
from detectors.timestamps import format_rfc3339_ms
from stream.health_scoring import format_confusion, health_confusion, read_snapshots
from stream.simulation import SimulationConfig, simulate
from stream.simulation.labels import Archetype, Labels, MerchantLabel

T = 1_790_000_000_000


def snapshot(merchant: str, at: int, band: Band) -> bytes:
    value = {"merchant_id": merchant, "band": band.value, "as_of": format_rfc3339_ms(at)}
    value["score_model_version"] = "h"
    return orjson.dumps({"topic": "merchant-health", "value": value})


def test_the_band_is_the_last_snapshot_by_the_judging_time(tmp_path: Path) -> None:
    path = tmp_path / "dec.jsonl"
    lines = [
        snapshot("m1", T, Band.HEALTHY),
        snapshot("m1", T + 10, Band.CRITICAL),  # after m1's judging time: not read
        snapshot("m2", T, Band.HEALTHY),
        snapshot("m2", T + 5, Band.CRITICAL),
        orjson.dumps({"topic": "risk-alerts", "value": {"alert_id": "a", "band": "x"}}),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    labels = [
        MerchantLabel("m1", Archetype.FRAUDULENT, Band.CRITICAL, T + 5, T),
        MerchantLabel("m2", Archetype.FRAUDULENT, Band.CRITICAL, T + 5, T),
        MerchantLabel("m3", Archetype.GOOD, Band.HEALTHY, T + 5),  # never scored
    ]
    result = health_confusion(labels, read_snapshots(path))
    assert result.table[Archetype.FRAUDULENT] == {Band.HEALTHY: 1, Band.CRITICAL: 1}
    assert result.share(Archetype.FRAUDULENT) == 0.5
    assert result.share(Archetype.GOOD) == 0.0  # no snapshot is not "healthy"
    assert "fraudulent" in format_confusion(result)


def test_merchant_labels_round_trip_and_each_archetype_has_its_merchants() -> None:
    labels = simulate(SimulationConfig(seed=2, scale=0.1, days=4, merchants=2)).labels
    assert [m.archetype for m in labels.merchants] == [a for a in Archetype for _ in range(2)]
    assert Labels.from_json(orjson.loads(labels.dumps())) == labels
    fraud = [m for m in labels.merchants if m.archetype is Archetype.FRAUDULENT]
    assert all(m.fraud_start_ms and m.judged_at_ms > m.fraud_start_ms for m in fraud)
