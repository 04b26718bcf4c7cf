"""The control plane on real Kafka: the CLI publishes to the compacted
topic and its audit copy, `show` folds it as a worker does."""

from __future__ import annotations

import asyncio
import io
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from detectors.control import KillSwitch, ListEntityType, ListEntry, ListName, Provenance, Switch
from detectors.control_snapshot import ControlSnapshot, fold
from detectors.timestamps import format_rfc3339_ms
from stream import control_cli, kafka_io
from stream.cli import build_parser, cmd_backtest
from stream.kafka_io import read_from
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    order_json,
    wait_caught_up,
    wait_ready,
)

pytestmark = pytest.mark.integration


def control(settings: Settings, *argv: str) -> str:
    out = io.StringIO()
    args = build_parser().parse_args(["control", *argv])
    assert control_cli.run(settings, args, out) == 0
    return out.getvalue()


async def cleanup_policy(settings: Settings, topic: str) -> str:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        for _ in range(50):  # a new topic's metadata reaches the config handler shortly after
            resource = ConfigResource(ConfigResourceType.TOPIC, topic)
            [response] = await admin.describe_configs([resource])
            entries = {e[0]: e[1] for e in response.resources[0][4]}
            if "cleanup.policy" in entries:
                return str(entries["cleanup.policy"])
            await asyncio.sleep(0.1)
        raise AssertionError(response.resources)
    finally:
        await admin.close()


def test_cli_publishes_state_and_audit_and_show_folds_it(services: Services) -> None:
    settings = services.settings(actor="ops-alice")
    asyncio.run(create_topics(settings))
    assert asyncio.run(cleanup_policy(settings, settings.topics.control)) == "compact"
    assert asyncio.run(cleanup_policy(settings, settings.topics.control_audit)) == "delete"

    control(settings, "kill-switch", "on", "--reason", "misfire")
    control(settings, "mode", "r1", "shadow", "--reason", "tuning", "--actor", "bob")
    control(settings, "list", "add", "allow", "merchant", "m-7", "--reason", "vip")
    control(settings, "snooze", "user", "u-1", "--rule", "r1", "--until", "2h", "--reason", "fp")
    control(settings, "list", "remove", "allow", "merchant", "m-7", "--reason", "no longer")
    control(settings, "kill-switch", "off", "--reason", "fixed", "--id", "op-42")

    shown = control(settings, "show", "--json")
    snapshot = ControlSnapshot.from_wire(orjson.loads(shown))
    assert snapshot.applied == 6 and not snapshot.kill_switch
    assert sorted(snapshot.records) == ["kill-switch", "rule-mode:r1", "snooze:user:r1:u-1"]
    assert snapshot.records["rule-mode:r1"].meta.actor == "bob"
    assert snapshot.records["kill-switch"].meta.control_id == "op-42"
    assert snapshot.records["snooze:user:r1:u-1"].meta.actor == "ops-alice"
    assert "kill switch off" in control(settings, "show")

    history = control(settings, "log").splitlines()
    assert len(history) == 6, history
    assert "misfire" in history[0] and "op-42" in history[-1]
    audit = asyncio.run(read_from(settings.kafka_bootstrap, settings.topics.control_audit))
    state = asyncio.run(read_from(settings.kafka_bootstrap, settings.topics.control))
    assert [m.value for m in audit] == [m.value for m in state]
    print(f"control CLI: {len(audit)} records published to state and audit topics")


CONTROL_TEST_RULES = """\
ruleset: control-test
ruleset_version: "1"
rules:
  - id: burst
    version: 1
    triggers: [orders]
    entity: user
    metric: {kind: count, topics: [orders], window: 10m}
    compare: ">="
    threshold: 2
    severity: high
    action: {type: benefit_freeze, scope: vouchers, duration: 1d}
"""
RULE = "burst"
EFFECT_BUDGET_S = 5.0


def scrape(worker: WorkerProcess, prefix: str) -> list[str]:
    url = f"http://127.0.0.1:{worker.settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        return [line for line in resp.read().decode().splitlines() if line.startswith(prefix)]


def metric(worker: WorkerProcess, series: str) -> float | None:
    found = scrape(worker, series + " ")  # labels in name order
    return float(found[0].split()[-1]) if found else None


def steer_and_time(worker: WorkerProcess, series: str, value: float, *argv: str) -> float:
    """Seconds from issuing `control *argv` (the command's own publishing
    included) until the worker's `series` reads `value`: the snapshot it
    steers by is swapped in the same step that sets the gauge, so the next
    batch is judged under it."""
    started = time.monotonic()
    control(worker.settings, *argv)
    while time.monotonic() - started < EFFECT_BUDGET_S:
        if metric(worker, series) == value:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{series} not {value} within {EFFECT_BUDGET_S}s")


def iso(ms: int) -> str:
    return format_rfc3339_ms(ms)


class Probe:
    """Orders that make `burst` fire for a fresh user, and what came of them."""

    def __init__(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.sent = 0

    def fire(self, user: str, at_ms: int, count: int = 2) -> None:
        s = self.worker.settings
        values = [
            (b"m-1", order_json(f"{user}-{self.sent + i}", user, iso(at_ms + i * 1000)))
            for i in range(count)
        ]
        self.sent += count
        asyncio.run(kafka_io.produce(s.kafka_bootstrap, s.topics.orders, values))
        asyncio.run(wait_caught_up(self.worker, [s.topics.orders], timeout_s=30))

    def outputs(self, user: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        s = self.worker.settings
        alerts = asyncio.run(read_from(s.kafka_bootstrap, s.topics.alerts))
        freezes = asyncio.run(read_from(s.kafka_bootstrap, s.topics.benefit_freezes))
        return (
            [a for a in map(orjson.loads, (m.value for m in alerts)) if a["entity_id"] == user],
            [f for f in map(orjson.loads, (m.value for m in freezes)) if f["subject_id"] == user],
        )


@pytest.fixture(scope="module")
def steered_worker(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerProcess]:
    rules = Path(tmp_path_factory.mktemp("control-rules")) / "rules.yaml"
    rules.write_text(CONTROL_TEST_RULES)
    settings = services.settings(rules_file=rules, actor="it-ops")
    asyncio.run(create_topics(settings))
    proc = WorkerProcess(settings, Path(tmp_path_factory.mktemp("control")) / "worker.log")
    proc.start()
    try:
        body = wait_ready(proc)
        assert body["control"] is True
        yield proc
    finally:
        proc.stop()


def test_a_running_worker_follows_the_control_topic(steered_worker: WorkerProcess) -> None:
    worker, probe = steered_worker, Probe(steered_worker)
    s = worker.settings
    now = int(time.time() * 1000)
    control(s, "list", "add", "allow", "user", "vip", "--reason", "known good")
    control(s, "list", "add", "block", "user", "mule", "--reason", "fraud ring")
    control(s, "snooze", "user", "sleepy", "--rule", RULE, "--until", iso(now + 120_000),
            "--reason", "false positive")  # fmt: skip
    asyncio.run(
        kafka_io.produce(s.kafka_bootstrap, s.topics.control, [(b"kill-switch", b"{not json")])
    )
    counts: dict[str, Any] = {}

    probe.fire("base", now)
    alerts, freezes = probe.outputs("base")
    assert len(alerts) == 1 and len(freezes) == 1 and "suppressed_by" not in alerts[0]

    counts["kill switch on: in effect after s"] = steer_and_time(
        worker, "fraud_control_kill_switch", 1, "kill-switch", "on", "--reason", "misfire"
    )
    probe.fire("killed", now)
    alerts, freezes = probe.outputs("killed")
    assert len(alerts) == 1 and freezes == [], (alerts, freezes)
    assert alerts[0]["suppressed_by"] == "kill_switch" and alerts[0]["mode"] == "enforce"
    counts["kill switch on: alerts, freezes"] = (len(alerts), len(freezes))

    counts["kill switch off: in effect after s"] = steer_and_time(
        worker, "fraud_control_kill_switch", 0, "kill-switch", "off", "--reason", "fixed"
    )
    probe.fire("restored", now)
    alerts, freezes = probe.outputs("restored")
    assert len(alerts) == 1 and len(freezes) == 1 and "suppressed_by" not in alerts[0]

    counts["shadow: in effect after s"] = steer_and_time(
        worker,
        'fraud_control_records{kind="rule-mode"}',
        1,
        "mode",
        RULE,
        "shadow",
        "--reason",
        "x",
    )
    probe.fire("shadowed", now)
    alerts, freezes = probe.outputs("shadowed")
    assert [a["mode"] for a in alerts] == ["shadow"] and freezes == [], (alerts, freezes)
    counts["shadow: alerts, freezes"] = (len(alerts), len(freezes))
    control(s, "mode", RULE, "enforce", "--reason", "tuned")

    probe.fire("mule", now, count=1)  # below the rule's threshold: the list alone alerts
    alerts, freezes = probe.outputs("mule")
    assert [a["rule_id"] for a in alerts] == ["control:block-list"] and freezes == []
    assert alerts[0]["evidence"]["reason"] == "fraud ring"
    counts["block-listed: alerts, freezes for one event"] = (len(alerts), len(freezes))

    probe.fire("vip", now, count=4)
    assert probe.outputs("vip") == ([], [])
    probe.fire("sleepy", now - 60_000)  # event time before the snooze's expiry
    assert probe.outputs("sleepy") == ([], [])
    probe.fire("sleepy", now + 130_000)  # after it: alerts and freezes again
    alerts, freezes = probe.outputs("sleepy")
    assert len(alerts) == 1 and len(freezes) == 1
    counts["snoozed: alerts, freezes after expiry"] = (len(alerts), len(freezes))

    assert metric(worker, 'fraud_control_records_rejected_total{kind="unknown"}') == 1
    assert metric(worker, 'fraud_enforcement_suppressed_total{reason="kill_switch"}') == 1
    assert metric(worker, 'fraud_enforcement_suppressed_total{reason="rule_shadow"}') == 1
    assert metric(worker, 'fraud_control_silenced_total{reason="allow_list"}') == 3
    assert metric(worker, 'fraud_control_silenced_total{reason="snooze"}') == 1
    assert metric(worker, "fraud_block_list_alerts_total") == 1
    shadow_alerts = 'fraud_alerts_total{mode="shadow",rule="burst",severity="high"}'
    assert metric(worker, shadow_alerts) == 1, scrape(worker, "fraud_alerts_total")
    for name, value in counts.items():
        print(f"control: {name}: {value if isinstance(value, tuple) else f'{value:.2f}'}")
    assert max(v for v in counts.values() if isinstance(v, float)) < EFFECT_BUDGET_S


def test_backtest_decides_under_a_saved_snapshot(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(CONTROL_TEST_RULES)
    settings = services.settings(rules_file=rules)
    meta = Provenance("c1", "alice", "drill", int(time.time() * 1000))
    snapshot = fold(
        [
            ("kill-switch", KillSwitch(Switch.ON, meta)),
            ("list:allow:user:vip", ListEntry(ListName.ALLOW, ListEntityType.USER, "vip", None,
                                              False, meta)),
        ]
    )  # fmt: skip
    saved = tmp_path / "control.json"
    saved.write_bytes(orjson.dumps(snapshot.to_wire()))
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"".join(
            orjson.dumps(
                {"topic": "orders", "value": orjson.loads(order_json(f"{u}{i}", u, iso(i)))}
            )
            + b"\n"
            for u in ("a", "vip")
            for i in range(2)
        )
    )

    def backtest(*extra: str) -> list[dict[str, Any]]:
        out = tmp_path / "out.jsonl"
        argv = ["backtest", str(events), "--out", str(out), "--quiet", *extra]
        assert cmd_backtest(settings, build_parser().parse_args(argv)) == 0
        return [orjson.loads(line) for line in out.read_bytes().splitlines()]

    topics = settings.topics
    plain = backtest()
    assert sorted(o["topic"] for o in plain) == [topics.benefit_freezes] * 2 + [topics.alerts] * 2
    steered = backtest("--control", str(saved))
    assert [o["topic"] for o in steered] == [topics.alerts]
    assert steered[0]["value"]["entity_id"] == "a"
    assert steered[0]["value"]["suppressed_by"] == "kill_switch"
    assert "2 records folded; kill switch ON" in capsys.readouterr().out
