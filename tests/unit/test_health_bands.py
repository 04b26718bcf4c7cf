"""Rules gated on a merchant's health band (issue: merchant account health):
the band history, the batch cuts that keep decisions independent of where
batches end, the rule file's syntax, and the shipped payout hold through the
pipeline at several batch sizes."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import orjson
import pytest

from detectors.health_bands import BandHistory, segments
from detectors.health_model import Band
from detectors.rulebook import RulebookError, parse_rulebook
from stream.backtest import _records
from stream.codec import Decoded, Incoming
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.simulation import SimulationConfig, simulate
from stream.simulation.labels import Archetype
from stream.store.memory_store import MemoryStore
from stream.store_wiring import store_config

HOUR = 3_600_000
H, R, C = Band.HEALTHY, Band.AT_RISK, Band.CRITICAL


def test_the_band_at_a_moment_is_the_last_change_at_or_before_it() -> None:
    history = BandHistory(((100, H), (200, C), (300, R)))
    assert [history.band_at(t) for t in (99, 100, 199, 200, 250, 300, 10**9)] == [
        None, H, H, C, C, R, R,
    ]  # fmt: skip
    assert BandHistory().band_at(100) is None


def test_a_snapshot_adds_a_change_only_when_the_band_changes() -> None:
    history = BandHistory().with_snapshot(100, H, 0)
    assert history.with_snapshot(150, H, 0) == history  # a score change within the band
    history = history.with_snapshot(200, C, 0)
    assert history.changes == ((100, H), (200, C))
    # A release re-scores at the last snapshot's moment: it replaces it.
    assert history.with_snapshot(200, H, 0).changes == ((100, H),)
    assert history.with_snapshot(200, R, 0).changes == ((100, H), (200, R))


def test_trimming_keeps_what_a_later_event_can_still_ask() -> None:
    history = BandHistory(((100, H), (200, C), (300, R)))
    trimmed = history.with_snapshot(400, H, keep_from_ms=250)
    assert trimmed.changes == ((200, C), (300, R), (400, H))
    for t in range(250, 500):
        assert trimmed.band_at(t) == history.with_snapshot(400, H, 0).band_at(t)
    assert BandHistory.from_bytes(trimmed.to_bytes()) == trimmed
    assert BandHistory.from_bytes(None) == BandHistory()


@pytest.mark.parametrize("seed", range(20))
def test_no_event_shares_a_segment_with_an_earlier_one_a_delay_older(seed: int) -> None:
    rng = random.Random(seed)
    delay = 1000
    times = [rng.randrange(0, 20_000) for _ in range(rng.randrange(0, 60))]
    times.sort(key=lambda t: t + rng.randrange(-3000, 3000))  # roughly in order, as topics merge
    starts = segments(times, delay)
    assert starts[:1] == ([0] if times else [])
    assert starts == sorted(set(starts))
    for a, b in zip(starts, [*starts[1:], len(times)], strict=True):
        part = times[a:b]
        for i, t in enumerate(part):
            assert all(earlier > t - delay for earlier in part[:i])
    # A batch within one delay is never cut.
    assert segments([5, 900, 3, 1002], delay) == [0]
    assert segments([5, 900, 3, 1003], delay) == [0, 3]


def book(requires: object, health: bool = True) -> str:
    rule = {
        "id": "hold",
        "version": 1,
        "triggers": ["payouts"],
        "entity": "merchant",
        "metric": {"kind": "count", "topics": ["payouts"], "window": "24h"},
        "compare": ">=",
        "threshold": 1,
        "severity": "high",
        "action": "alert",
        "requires": requires,
    }
    doc: dict[str, object] = {"rules": [rule]}
    if health:
        doc["health"] = {"score_model_version": "t1", "band_delay": "2h"}
    return orjson.dumps(doc).decode()


def test_a_rule_names_one_band_or_several() -> None:
    one = parse_rulebook(book({"health_band": "critical"}))
    assert one.rules[0].health_bands == {"critical"}
    several = parse_rulebook(book([{"health_band": ["at_risk", "critical"]}]))
    assert several.rules[0].health_bands == {"at_risk", "critical"}
    assert several.health is not None and several.health.band_delay_ms == 2 * HOUR


@pytest.mark.parametrize(
    ("requires", "health", "message"),
    [
        ({"health_band": "red"}, True, "expected one or more of healthy, at_risk"),
        ({"health_band": []}, True, "expected one or more of"),
        ({"health_band": "critical", "op": "="}, True, "expected {health_band: BAND}"),
        ({"health_band": "critical"}, False, "the file needs a `health` section"),
    ],
)
def test_band_mistakes_are_named(requires: object, health: bool, message: str) -> None:
    with pytest.raises(RulebookError) as caught:
        parse_rulebook(book(requires, health))
    assert message in str(caught.value)
    assert "rules[0].requires" in str(caught.value)


async def _outputs(items: list[Incoming], settings: Settings, size: int, now_ms: int) -> Counter:
    """Every record the pipeline publishes, wall-clock fields left out."""
    pipeline = Pipeline(settings, MemoryStore(store_config(settings)), load_rulebook(settings))
    out: Counter[tuple[str, bytes]] = Counter()
    for start in range(0, len(items), size):
        result = await pipeline.process_mixed(items[start : start + size], now_ms)
        for o in result.outputs:
            doc = orjson.loads(o.value)
            for wall in ("computed_at", "detected_at"):
                doc.pop(wall, None)
            out[(o.topic, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))] += 1
    return out


async def test_the_payout_hold_decides_the_same_at_every_batch_size(tmp_path: Path) -> None:
    """The simulator's merchant archetypes with the shipped rules: batches of
    9 events, of 200, and the whole run as one batch (cut by the pipeline
    wherever it spans more than the band delay) publish the same records,
    and the payout hold fires on fraudulent merchants."""
    sim = simulate(SimulationConfig(seed=5, scale=0.1, merchants=6))
    path = tmp_path / "events.jsonl"
    path.write_bytes(sim.jsonl())
    settings = Settings()
    items = [Incoming.read(t, r, settings.max_event_bytes) for t, r in _records(path, settings)]
    times = [i.decoded.event.occurred_at_ms for i in items if isinstance(i.decoded, Decoded)]
    now_ms = max(times) + 1000
    runs = [await _outputs(items, settings, size, now_ms) for size in (9, 200, len(items))]
    assert runs[0] == runs[1] == runs[2]
    held = [
        orjson.loads(value)["entity_id"]
        for (topic, value) in runs[0]
        if topic == settings.topics.alerts
        and orjson.loads(value)["rule_id"] == "critical_merchant_payout_hold"
    ]
    fraudulent = {
        m.merchant_id for m in sim.labels.merchants if m.archetype is Archetype.FRAUDULENT
    }
    print(f"\npayouts held: {len(held)}, at fraudulent archetypes: {len(set(held) & fraudulent)}")
    assert len(set(held) & fraudulent) >= len(fraudulent) // 2
