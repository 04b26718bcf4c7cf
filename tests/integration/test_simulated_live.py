"""The simulator's traffic through the live path gives the backtest's
decisions (issue: detection catalogue, last acceptance point).

`fraudstream simulate --to-kafka` publishes all four topics faster than the
worker applies them, so it meets a backlog: the hard case for cross-topic
rules, because each topic has its own consumer (payouts would otherwise run
days of event time ahead of orders). The event-time merge (stream.alignment)
keeps them in step; the test measures how many ids still differ."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from stream import kafka_io
from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.simulation import SimulationConfig, SimulationResult, simulate
from stream.simulation.publish import publish
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    decisions_only,
    settings_env,
    wait_caught_up,
    wait_ready,
)
from tests.integration.test_worker_restart import consumed

# A SIGTERM stop is a rebalance and a flush, not a wait for held records.
STOP_BUDGET_S = 15.0
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
            VALUE_OF[value[ID_FIELD[kind]]] = value
    return out


RULE_OF: dict[str, str] = {}  # decision id → rule, to explain differences
VALUE_OF: dict[str, Any] = {}


def explain(backtest: dict[str, set[str]], live: dict[str, set[str]]) -> None:
    for k in ID_FIELD:
        for i in sorted(live[k] - backtest[k]):
            v = VALUE_OF[i]
            print(f"  only live: {k} {RULE_OF[i]} {i} {v.get('evidence')} {v.get('occurred_at')}")
        for i in sorted(backtest[k] - live[k]):
            print(f"  only in backtest: {k} {RULE_OF[i]} {i}")


async def read_decisions(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name in (
        settings.topics.alerts,
        settings.topics.benefit_freezes,
        settings.topics.fund_freezes,
    ):
        values = [
            orjson.loads(r.value) for r in await kafka_io.read_from(settings.kafka_bootstrap, name)
        ]
        out += [(name, value) for value in decisions_only(values)]
    return out


async def simulated_backtest(
    services: Services, tmp_path: Path, seed: int, scale: float = 0.2
) -> tuple[SimulationResult, Path, dict[str, set[str]]]:
    """A small simulation written to events.jsonl, and the backtest's decision ids."""
    result = simulate(SimulationConfig(seed=seed, scale=scale))
    events = tmp_path / "events.jsonl"
    events.write_bytes(result.jsonl())
    settings = services.settings()
    out = tmp_path / "bt.jsonl"
    await run_backtest(settings, load_rulebook(settings), events, out, None)
    lines = [(d["topic"], d["value"]) for d in map(orjson.loads, out.read_bytes().splitlines())]
    return result, events, decisions_of(settings, lines)


async def test_simulated_traffic_live_equals_backtest(services: Services, tmp_path: Path) -> None:
    result, events, backtest = await simulated_backtest(services, tmp_path, seed=3)

    settings = services.settings()
    await create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        wait_ready(worker)
        # The command a user runs: the same simulation, published to Kafka while
        # the worker runs (faster than it can apply, so a backlog still forms).
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
        sent = subprocess.run(
            [
                sys.executable,
                "-m",
                "stream.cli",
                "simulate",
                "--seed",
                "3",
                "--scale",
                "0.2",
                "--out",
                str(tmp_path / "sent.jsonl"),
                "--to-kafka",
            ],
            env={**env, **settings_env(settings)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert sent.returncode == 0, sent.stderr
        assert (tmp_path / "sent.jsonl").read_bytes() == events.read_bytes()
        await wait_caught_up(worker, list(settings.topics.inputs().values()), timeout_s=240)
    finally:
        worker.stop()
    live = decisions_of(settings, await read_decisions(settings))

    total = sum(len(ids) for ids in backtest.values())
    differing = sum(len(backtest[k] ^ live[k]) for k in ID_FIELD)
    print(
        f"\n{result.summary()}\n"
        + "\n".join(f"{k}: backtest {len(backtest[k])}, live {len(live[k])}" for k in ID_FIELD)
        + f"\ndiffering ids: {differing} of {total}"
    )
    explain(backtest, live)
    assert backtest["alerts"] and backtest["benefit_freezes"] and backtest["fund_freezes"]
    # Freezes must agree exactly: a freeze only live would hit a merchant the
    # backtest (and so the tuning) never saw.
    assert live["benefit_freezes"] == backtest["benefit_freezes"]
    assert live["fund_freezes"] == backtest["fund_freezes"]
    assert differing <= 0.01 * total


async def test_stopped_and_killed_while_records_are_held_loses_nothing(
    services: Services, tmp_path: Path
) -> None:
    """The whole simulated file waits in Kafka before the worker starts, so the
    merge holds records of the topics that run ahead; the worker is stopped
    (SIGTERM) and then killed (kill -9) mid-way. A held record must not be
    committed before it is applied: afterwards the decisions still equal the
    backtest's. The SIGTERM gives held records back at once instead of
    waiting for them until killed. Records redelivered after the kill whose
    outputs were delivered before it are not judged again (stream.delivery)."""
    result, _, backtest = await simulated_backtest(services, tmp_path, seed=5)

    settings = services.settings()
    await create_topics(settings)
    await publish(settings, result.timeline)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    total = len(result.timeline)
    try:
        for fraction in (0.25, 0.6):
            worker.start()
            wait_ready(worker)
            deadline = time.monotonic() + 120
            while (
                consumed(worker) < fraction * total / worker.starts and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.05)
            if worker.starts == 1:
                held = metric_sum(worker, "fraud_alignment_held_records")
                asked = time.monotonic()
                worker.stop()
                stopped_s = time.monotonic() - asked
            else:
                worker.kill()
        worker.start()
        wait_ready(worker)
        await wait_caught_up(worker, list(settings.topics.inputs().values()), timeout_s=240)
        settled = metric_sum(worker, "fraud_events_settled_total")
    finally:
        worker.stop()
    live = decisions_of(settings, await read_decisions(settings))
    differing = sum(len(backtest[k] ^ live[k]) for k in ID_FIELD)
    print(
        f"\nstopped with {held:.0f} records held (in {stopped_s:.1f} s), then killed; "
        f"{total} events; differing ids: {differing}; settled: {settled:.0f}"
    )
    explain(backtest, live)
    assert live["benefit_freezes"] == backtest["benefit_freezes"]
    assert live["fund_freezes"] == backtest["fund_freezes"]
    assert live["alerts"] == backtest["alerts"]
    assert settled > 0  # the kill hit records delivered since the last commit
    assert stopped_s < STOP_BUDGET_S


def metric_sum(worker: WorkerProcess, name: str) -> float:
    """The sum of a metric's series on the worker's /metrics."""
    url = f"http://127.0.0.1:{worker.settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{.*\}})? (\S+)$", text, re.M))
