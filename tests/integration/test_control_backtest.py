"""Backtest under a saved control snapshot equals live: a worker steered by
an allow entry, a snooze, a block entry, two watch entries and a rule-mode
decides on some orders; `control show --json` saves the snapshot it steered
by; `fraudstream backtest --control` on the same events gives the same
alerts (ids, rules, modes, tags) and the same freezes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.control_snapshot import ControlSnapshot
from stream import kafka_io
from stream.cli import build_parser, cmd_backtest
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    order_json,
    wait_caught_up,
    wait_ready,
)
from tests.integration.test_control import control, iso, metric
from tests.unit.test_pipeline_control import RULES as PIPELINE_RULES

pytestmark = pytest.mark.integration

# The unit test's `burst` (freezes at 4) and its watched twin (alerts at 2),
# and `merchant_burst`, which would hold payouts but is forced to shadow.
RULES = (
    PIPELINE_RULES
    + """\
  - id: merchant_burst
    version: 1
    triggers: [orders]
    entity: merchant
    metric: {kind: count, topics: [orders], window: 10m}
    compare: ">="
    threshold: 6
    severity: high
    action: {type: fund_freeze, scope: payouts, duration: 1d}
"""
)
PREFIX = "eqb-"


def traffic(now: int) -> list[bytes]:
    """(user, merchant, event-time offsets in s): each user buys at a shop
    of its own but the shopper, whose shop is the watched one."""
    plan = [
        ("plain", "plain-shop", [0, 1, 2, 3]),
        ("vip", "vip-shop", [0, 1, 2, 3]),  # allow-listed
        ("mule", "mule-shop", [0]),  # block-listed, below every threshold
        ("watched", "watched-shop", [0, 1, 2, 3]),
        ("shopper", "shop", [0, 1, 2, 3]),  # the merchant is watched
        ("sleepy", "sleepy-shop", [-60, -59, -58, -57, 130, 131]),  # snoozed until now + 120 s
    ]
    return [
        order_json(f"{PREFIX}{user}-{i}", PREFIX + user, iso(now + s * 1000), PREFIX + shop)
        for user, shop, offsets in plan
        for i, s in enumerate(offsets)
    ]


def steer(settings: Settings, now: int) -> tuple[ControlSnapshot, dict[str, int]]:
    """Publish the control records; the snapshot they make and its records per kind."""
    for argv in (
        ("list", "add", "allow", "user", PREFIX + "vip"),
        ("list", "add", "block", "user", PREFIX + "mule"),
        ("list", "add", "watch", "user", PREFIX + "watched"),
        ("list", "add", "watch", "merchant", PREFIX + "shop"),
        ("snooze", "user", PREFIX + "sleepy", "--until", iso(now + 120_000)),
        ("mode", "merchant_burst", "shadow"),
    ):
        control(settings, *argv, "--reason", "equality drill")
    snapshot = ControlSnapshot.from_wire(orjson.loads(control(settings, "show", "--json")))
    kinds: dict[str, int] = {}
    for record in snapshot.records.values():
        kinds[record.kind.value] = kinds.get(record.kind.value, 0) + 1
    return snapshot, kinds


def decisions(settings: Settings, docs: list[dict[str, Any]]) -> dict[str, set[tuple[Any, ...]]]:
    """What identifies each alert and freeze (never the wall-clock times)."""
    topics = settings.topics
    out: dict[str, set[tuple[Any, ...]]] = {"alerts": set(), "freezes": set()}
    for doc in docs:
        value = doc["value"]
        if doc["topic"] == topics.alerts and value["entity_id"].startswith(PREFIX):
            out["alerts"].add(
                (
                    value["alert_id"],
                    value["rule_id"],
                    value["entity_id"],
                    value["mode"],
                    tuple(value.get("tags", ())),
                    value.get("suppressed_by"),
                )
            )
        elif doc["topic"] in (topics.benefit_freezes, topics.fund_freezes):
            subject = value.get("subject_id") or value.get("merchant_id")
            if subject.startswith(PREFIX):
                out["freezes"].add((value["freeze_id"], value["rule_id"], subject))
    return out


def live(settings: Settings) -> list[dict[str, Any]]:
    topics = settings.topics
    return [
        {"topic": topic, "value": orjson.loads(m.value)}
        for topic in (topics.alerts, topics.benefit_freezes, topics.fund_freezes)
        for m in asyncio.run(kafka_io.read_from(settings.kafka_bootstrap, topic))
    ]


def test_backtest_under_the_saved_snapshot_equals_live(services: Services, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = services.settings(rules_file=rules, actor="it-ops")
    asyncio.run(create_topics(settings))
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        wait_ready(worker)
        started = time.monotonic()
        now = int(time.time() * 1000)
        snapshot, kinds = steer(settings, now)
        series = {f'fraud_control_records{{kind="{k}"}}': n for k, n in kinds.items()}
        while any(metric(worker, name) != n for name, n in series.items()):  # not yet in effect
            assert time.monotonic() - started < 10, series
            time.sleep(0.02)
        values = traffic(now)
        asyncio.run(
            kafka_io.produce(
                settings.kafka_bootstrap, settings.topics.orders, [(b"m", v) for v in values]
            )
        )
        asyncio.run(wait_caught_up(worker, [settings.topics.orders], timeout_s=30))
    finally:
        worker.stop()
    live_decisions = decisions(settings, live(settings))

    saved = tmp_path / "control.json"
    saved.write_bytes(orjson.dumps(snapshot.to_wire()))
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"".join(
            orjson.dumps({"topic": "orders", "value": orjson.loads(v)}) + b"\n" for v in values
        )
    )
    out = tmp_path / "out.jsonl"
    argv = ["backtest", str(events), "--out", str(out), "--quiet", "--control", str(saved)]
    assert cmd_backtest(settings, build_parser().parse_args(argv)) == 0
    backtest = decisions(settings, [orjson.loads(line) for line in out.read_bytes().splitlines()])

    assert backtest == live_decisions
    by_rule: dict[tuple[str, str], tuple[Any, ...]] = {
        (a[1], a[2].removeprefix(PREFIX)): a[3:] for a in live_decisions["alerts"]
    }
    assert by_rule == {
        ("burst", "plain"): ("enforce", (), None),
        ("control:block-list", "mule"): ("enforce", (), None),
        ("burst", "watched"): ("enforce", ("watch",), None),
        ("burst_watched", "watched"): ("enforce", ("watch",), None),
        ("burst", "shopper"): ("enforce", ("watch",), None),
        ("burst", "sleepy"): ("enforce", (), None),
        ("merchant_burst", "sleepy-shop"): ("shadow", (), None),
    }
    frozen = sorted((f[1], f[2].removeprefix(PREFIX)) for f in live_decisions["freezes"])
    assert frozen == [("burst", u) for u in ("plain", "shopper", "sleepy", "watched")]
    print(
        f"\ncontrol snapshot of {len(snapshot.records)} records: live and backtest agree on "
        f"{len(by_rule)} alerts and {len(frozen)} freezes ({time.monotonic() - started:.1f} s)"
    )
