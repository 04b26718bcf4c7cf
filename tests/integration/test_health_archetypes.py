"""Merchant account health separates the simulator's merchant archetypes
(issue: merchant account health): good, sloppy, deteriorating and
fraudulent storefronts through the backtest with the shipped rules and
health model; the confusion table is printed (-s)."""

from __future__ import annotations

from pathlib import Path

from detectors.health_model import Band
from stream.backtest import run_backtest
from stream.health_scoring import format_confusion, health_confusion, read_snapshots
from stream.rules_loading import load_rulebook
from stream.simulation import SimulationConfig, simulate
from stream.simulation.labels import Archetype
from tests.integration.services import Services


async def test_health_bands_separate_the_merchant_archetypes(
    services: Services, tmp_path: Path
) -> None:
    result = simulate(SimulationConfig(seed=5, scale=0.2, merchants=10))
    events, decisions = tmp_path / "ev.jsonl", tmp_path / "dec.jsonl"
    events.write_bytes(result.jsonl())
    settings = services.settings()
    summary = await run_backtest(settings, load_rulebook(settings), events, decisions, None)
    assert summary.dead_letters == 0
    confusion = health_confusion(result.labels.merchants, read_snapshots(decisions))
    print(f"\n{format_confusion(confusion)}")
    assert confusion.share(Archetype.GOOD) >= 0.9
    # Within a day of its fraud starting (the label's judging time).
    assert confusion.share(Archetype.FRAUDULENT) >= 0.9
    assert confusion.share(Archetype.SLOPPY, Band.HEALTHY) <= 0.1
    # 30-day rates lag a merchant that turned bad three days ago: most, not
    # all, have left `healthy` by the end of the run.
    assert confusion.share(Archetype.DETERIORATING, Band.HEALTHY) <= 0.3
