"""The default rule set on labelled simulated traffic (issue: detection
catalogue): on the default run and on two other seeds and scales, every
fraud family is detected, every expected action is taken, no legitimate
look-alike is frozen, and freeze precision is at least 0.95. The backtest
runs the worker's code path on real Redis; the table is printed (-s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from stream.scoring import format_score, score_files
from stream.simulation import SimulationConfig, simulate
from stream.simulation.labels import write_labels
from tests.integration.services import Services

RUNS = [
    # The tuning run the README's table comes from (`--soak`).
    pytest.param(
        SimulationConfig(seed=1, scale=1.0), id="default-seed1-scale1", marks=pytest.mark.soak
    ),
    # Tuned on, like seed 1; the held-out seeds below cover its scale in CI.
    pytest.param(SimulationConfig(seed=7, scale=0.5), id="seed7-scale0.5", marks=pytest.mark.soak),
    pytest.param(SimulationConfig(seed=42, scale=2.0), id="seed42-scale2", marks=pytest.mark.soak),
    # Held out: never looked at while the rules and the simulator were tuned.
    *(
        pytest.param(SimulationConfig(seed=seed, scale=0.5), id=f"heldout-seed{seed}-scale0.5")
        for seed in (11, 23, 31)
    ),
]


@pytest.mark.parametrize("config", RUNS)
async def test_default_rules_on_simulated_traffic(
    services: Services, tmp_path: Path, config: SimulationConfig
) -> None:
    result = simulate(config)
    events, labels, decisions = (tmp_path / n for n in ("ev.jsonl", "labels.json", "dec.jsonl"))
    events.write_bytes(result.jsonl())
    write_labels(result.labels, labels)
    settings = services.settings()
    summary = await run_backtest(settings, load_rulebook(settings), events, decisions, None)
    assert summary.dead_letters == 0
    scored = score_files(labels, decisions)
    print(f"\n{result.summary()}\n{format_score(scored)}\n{summary.table()}")
    assert set(scored.families) == {
        "velocity",
        "voucher_abuse",
        "collusion",
        "refund_abuse",
        "payout_risk",
        "bust_out",
        "brushing",
    }
    for name, family in scored.families.items():
        assert family.detected == family.scenarios, f"{name}: missed {family.missed}"
        assert family.expected_action == family.scenarios, f"{name}: {family.missed}"
    assert scored.lookalikes_frozen == []
    assert scored.freeze_precision >= 0.95, scored.legit_frozen
    assert scored.acceptable()
