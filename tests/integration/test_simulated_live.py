"""The simulator's traffic through the live path gives the backtest's
decisions (issue: detection catalogue, last acceptance point).

The events are published *before* the worker starts, so it meets a backlog
of all four topics at once: the hardest case for cross-topic rules, because
each topic has its own consumer (payouts would otherwise run days of event
time ahead of orders). Event-time alignment (stream.alignment) keeps them in
step; the test measures how many ids still differ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from stream import kafka_io
from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.simulation import SimulationConfig, simulate
from stream.simulation.publish import publish
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    wait_caught_up,
    wait_ready,
)

ID_FIELD = {"alerts": "alert_id", "benefit_freezes": "freeze_id", "fund_freezes": "freeze_id"}


def decisions_of(
    settings: Settings, lines: list[tuple[str, dict[str, Any]]]
) -> dict[str, set[str]]:
    names = {
        settings.topics.alerts: "alerts",
        settings.topics.benefit_freezes: "benefit_freezes",
        settings.topics.fund_freezes: "fund_freezes",
    }
    out: dict[str, set[str]] = {kind: set() for kind in ID_FIELD}
    for topic, value in lines:
        kind = names.get(topic)
        if kind is not None:
            out[kind].add(value[ID_FIELD[kind]])
            RULE_OF[value[ID_FIELD[kind]]] = value["rule_id"]
    return out


RULE_OF: dict[str, str] = {}  # decision id → rule, to explain differences


async def test_simulated_traffic_live_equals_backtest(services: Services, tmp_path: Path) -> None:
    result = simulate(SimulationConfig(seed=3, scale=0.2))
    events = tmp_path / "events.jsonl"
    events.write_bytes(result.jsonl())

    bt_settings = services.settings()
    out = tmp_path / "bt.jsonl"
    await run_backtest(bt_settings, load_rulebook(bt_settings), events, out, None)
    backtest = decisions_of(
        bt_settings,
        [(d["topic"], d["value"]) for d in map(orjson.loads, out.read_bytes().splitlines())],
    )

    settings = services.settings()
    await create_topics(settings)
    await publish(settings, result.timeline)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        wait_ready(worker)
        await wait_caught_up(worker, list(settings.topics.inputs().values()), timeout_s=240)
    finally:
        worker.stop()
    read = []
    for name in (
        settings.topics.alerts,
        settings.topics.benefit_freezes,
        settings.topics.fund_freezes,
    ):
        read += [
            (name, orjson.loads(r.value))
            for r in await kafka_io.read_from(settings.kafka_bootstrap, name)
        ]
    live = decisions_of(settings, read)

    total = sum(len(ids) for ids in backtest.values())
    differing = sum(len(backtest[k] ^ live[k]) for k in ID_FIELD)
    print(
        f"\n{result.summary()}\n"
        + "\n".join(f"{k}: backtest {len(backtest[k])}, live {len(live[k])}" for k in ID_FIELD)
        + f"\ndiffering ids: {differing} of {total}"
    )
    for k in ID_FIELD:
        for i in sorted(live[k] - backtest[k]):
            print(f"  only live: {k} {RULE_OF[i]} {i}")
        for i in sorted(backtest[k] - live[k]):
            print(f"  only in backtest: {k} {RULE_OF[i]} {i}")
    assert backtest["alerts"] and backtest["benefit_freezes"] and backtest["fund_freezes"]
    # Freezes must agree exactly: a freeze only live would hit a merchant the
    # backtest (and so the tuning) never saw.
    assert live["benefit_freezes"] == backtest["benefit_freezes"]
    assert live["fund_freezes"] == backtest["fund_freezes"]
    assert differing <= 0.01 * total
