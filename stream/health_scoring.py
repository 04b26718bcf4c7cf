"""How well merchant-health bands separate the simulator's merchant
archetypes (stream.simulation.merchant_quality): for each labelled merchant,
the band of its last `merchant-health` snapshot at or before the label's
judging time, tallied by archetype into a confusion table.

No snapshot by then reads as `insufficient_data`, which is what a merchant
without one is: a missing snapshot never counts as the expected band.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from detectors.health_model import Band
from detectors.timestamps import parse_rfc3339_ms
from stream.simulation.labels import Archetype, MerchantLabel

__all__ = ["HealthConfusion", "format_confusion", "health_confusion", "read_snapshots"]

# merchant id → its snapshots as (as_of ms, band), in the order published
Snapshots = dict[str, list[tuple[int, Band]]]


@dataclass(frozen=True, slots=True)
class HealthConfusion:
    table: dict[Archetype, Counter[Band]]
    expected: dict[Archetype, Band]

    def share(self, archetype: Archetype, band: Band | None = None) -> float:
        """Share of an archetype's merchants in `band` (default: its expected one)."""
        row = self.table.get(archetype, Counter())
        total = sum(row.values())
        return row[band or self.expected[archetype]] / total if total else 0.0


def read_snapshots(path: Path) -> Snapshots:
    """The `merchant-health` records among decision lines ({"topic", "value"})."""
    out: Snapshots = {}
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            value = orjson.loads(line).get("value")
            if isinstance(value, dict) and "score_model_version" in value and "band" in value:
                at = parse_rfc3339_ms(value["as_of"])
                out.setdefault(str(value["merchant_id"]), []).append((at, Band(value["band"])))
    return out


def health_confusion(labels: Sequence[MerchantLabel], snapshots: Snapshots) -> HealthConfusion:
    table: dict[Archetype, Counter[Band]] = {a: Counter() for a in Archetype}
    expected: dict[Archetype, Band] = {}
    for label in labels:
        seen = [
            band for at, band in snapshots.get(label.merchant_id, []) if at <= label.judged_at_ms
        ]
        table[label.archetype][seen[-1] if seen else Band.INSUFFICIENT_DATA] += 1
        expected[label.archetype] = label.expected_band
    return HealthConfusion(table, expected)


def format_confusion(result: HealthConfusion) -> str:
    bands = list(Band)
    lines = [f"{'archetype':<14} {'expected':<10} " + " ".join(f"{b.value:>17}" for b in bands)]
    for archetype, row in result.table.items():
        if not row:
            continue
        expected = result.expected[archetype].value
        cells = " ".join(f"{row[b]:>17}" for b in bands)
        lines.append(f"{archetype.value:<14} {expected:<10} {cells}")
    return "\n".join(lines)
