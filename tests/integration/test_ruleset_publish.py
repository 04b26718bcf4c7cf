"""Rules published on real Kafka reach two running workers of one group
without a restart: `control rules publish` of a new rule makes it fire on
both within 5 s, its decisions carry the new `ruleset_version`, and a
ruleset record the workers cannot use is refused while the last good one
keeps running."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from detectors.control import ControlKind, Provenance
from detectors.rulebook import parse_rulebook
from detectors.ruleset_digest import ruleset_digest
from detectors.timestamps import format_rfc3339_ms
from stream import kafka_io
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    order_json,
    wait_caught_up,
    wait_ready,
)
from tests.integration.test_control import CONTROL_TEST_RULES, control, metric, scrape

pytestmark = pytest.mark.integration

BUDGET_S = 5.0
PARTITIONS = 4
# The file's rules plus one on an aggregate no worker keeps yet (orders per
# device), freezing: its alerts and freezes must carry the new version.
NEW_RULE = "device_pair"
PUBLISHED = CONTROL_TEST_RULES.replace("threshold: 2", "threshold: 50") + (
    CONTROL_TEST_RULES.split("rules:\n")[1]
    .replace("id: burst", f"id: {NEW_RULE}")
    .replace("entity: user", "entity: device")
    # The test freezes 8 devices within 10 minutes: above the default freeze
    # budget (5), which would demote the rule to shadow (stream.enforcement_guard).
    + "    guardrail: {freeze_budget_10m: 50}\n"
)
# What a newer tool might publish: a metric kind these workers do not know.
# Its version is the honest digest, so only the rules check can refuse it.
UNKNOWN_KIND = PUBLISHED.replace("kind: count", "kind: velocity", 1)


def series(version: str) -> str:
    return f'fraud_ruleset_info{{ruleset="control-test",ruleset_version="{version}"'


def runs(worker: WorkerProcess, version: str) -> bool:
    return any(line.endswith(" 1.0") for line in scrape(worker, series(version)))


def assigned(worker: WorkerProcess) -> int:
    url = f"http://127.0.0.1:{worker.settings.web_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(orjson.loads(resp.read()).get("assigned_partitions", 0))
    except OSError:
        return 0


def wait_balanced(workers: list[WorkerProcess], total: int, timeout_s: float = 60) -> None:
    """Until the group's rebalance has given each worker a share."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        shares = [assigned(w) for w in workers]
        if sum(shares) == total and all(shares):
            return
        time.sleep(0.2)
    raise AssertionError(f"partitions not shared: {shares}")


def until(what: str, check: Any, started: float, budget_s: float = BUDGET_S) -> float:
    while time.monotonic() - started < budget_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {budget_s}s")


@pytest.fixture(scope="module")
def workers(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    tmp = tmp_path_factory.mktemp("ruleset-publish")
    rules = tmp / "rules.yaml"
    rules.write_text(CONTROL_TEST_RULES)
    settings = services.settings(rules_file=rules, actor="it-ops", dev_partitions=PARTITIONS)
    asyncio.run(create_topics(settings))
    procs = [
        WorkerProcess(settings.replace(web_port=free_port()), tmp / f"worker-{n}.log") for n in "ab"
    ]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            wait_ready(proc)
        wait_balanced(procs, PARTITIONS * len(settings.topics.inputs()))
        yield procs
    finally:
        for proc in procs:
            proc.stop()


class Probe:
    """Two orders from one device on every partition of `orders` (so on both
    workers), each from its own users: the file's `burst` (2 per user) never
    fires, a rule on devices does."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sent = 0

    def send(self, tag: str) -> list[str]:
        s, now = self.settings, int(time.time() * 1000)
        devices = []
        for partition in range(PARTITIONS):
            device = f"{tag}-d{partition}"
            devices.append(device)
            values = []
            for i in range(2):
                self.sent += 1
                at = format_rfc3339_ms(now + i)
                user = f"{tag}-u{self.sent}"
                value = order_json(f"{tag}-{self.sent}", user, at, device_id=device)
                values.append((b"m-1", value))
            topic = s.topics.orders
            asyncio.run(kafka_io.produce(s.kafka_bootstrap, topic, values, None, partition))
        return devices

    def decisions(self, devices: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        s = self.settings
        alerts = asyncio.run(kafka_io.read_from(s.kafka_bootstrap, s.topics.alerts))
        freezes = asyncio.run(kafka_io.read_from(s.kafka_bootstrap, s.topics.benefit_freezes))
        a = [v for v in (orjson.loads(m.value) for m in alerts) if v["entity_id"] in devices]
        f = [v for v in (orjson.loads(m.value) for m in freezes) if v["subject_id"] in devices]
        return a, f

    def settled(self, devices: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The decisions on `devices` once one alert and one freeze per device
        are in Kafka (the metric counts an alert when it is handed to the
        producer, a little before it lands)."""
        deadline = time.monotonic() + 10
        while True:
            alerts, freezes = self.decisions(devices)
            if len(alerts) >= len(devices) and len(freezes) >= len(devices):
                return alerts, freezes
            if time.monotonic() > deadline:
                return alerts, freezes  # the caller's assertions say what is missing
            time.sleep(0.1)


def fired_on(worker: WorkerProcess) -> float:
    found = scrape(worker, f'fraud_alerts_total{{mode="enforce",rule="{NEW_RULE}"')
    return sum(float(line.split()[-1]) for line in found)


def test_a_published_rule_fires_on_both_workers_and_a_refused_one_changes_nothing(
    workers: list[WorkerProcess], tmp_path: Path
) -> None:
    a, b = workers
    s = a.settings
    file_version = parse_rulebook(CONTROL_TEST_RULES).digest
    assert runs(a, file_version) and runs(b, file_version)
    probe = Probe(s)
    silent = probe.send("before")
    asyncio.run(wait_caught_up(a, [s.topics.orders], timeout_s=30))  # judged before the publish
    published = tmp_path / "published.yaml"
    published.write_text(PUBLISHED)
    version = parse_rulebook(PUBLISHED).digest
    counts: dict[str, Any] = {}

    started = time.monotonic()
    shown = control(s, "rules", "publish", str(published), "--reason", "device pairs")
    assert f"+ {NEW_RULE}" in shown and "~ burst (threshold)" in shown, shown
    counts["publish: in effect on both workers after s"] = until(
        "new version on both", lambda: runs(a, version) and runs(b, version), started
    )
    devices = probe.send("after")
    counts["publish: the new rule fired on both workers after s"] = until(
        "new rule on both", lambda: fired_on(a) >= 1 and fired_on(b) >= 1, started
    )
    assert not runs(a, file_version) and not runs(b, file_version)

    alerts, freezes = probe.settled(devices)
    assert sorted(x["entity_id"] for x in alerts) == devices, alerts
    assert sorted(x["subject_id"] for x in freezes) == devices, freezes
    assert {x["ruleset_version"] for x in alerts + freezes} == {version}
    assert {x["rule_id"] for x in alerts} == {NEW_RULE}
    assert probe.decisions(silent) == ([], [])  # before the publish: no such rule
    counts["new rule: alerts, freezes (4 partitions)"] = (len(alerts), len(freezes))
    assert f"rule set: {version}" in control(s, "show")

    # A record the CLI would not send (it runs `rules check` first), from another writer.
    meta = Provenance("newer-tool-1", "newer-tool", "velocity kind", int(time.time() * 1000))
    bad = {
        **meta.to_wire(ControlKind.RULESET),
        "ruleset_version": ruleset_digest(yaml.safe_load(UNKNOWN_KIND)),
        "rules_yaml": UNKNOWN_KIND,
    }
    started = time.monotonic()
    asyncio.run(
        kafka_io.produce(s.kafka_bootstrap, s.topics.control, [(b"ruleset", orjson.dumps(bad))])
    )
    counts["refused ruleset: seen by both workers after s"] = until(
        "refusal on both",
        lambda: all(metric(w, "fraud_ruleset_refused") == 1 for w in workers),
        started,
    )
    for w in workers:
        assert metric(w, 'fraud_control_records_rejected_total{kind="ruleset"}') == 1
        assert runs(w, version)
    devices = probe.send("refused")
    until("the good rule set still fires", lambda: fired_on(a) + fired_on(b) >= 8, started, 30)
    alerts, freezes = probe.settled(devices)
    assert {x["ruleset_version"] for x in alerts + freezes} == {version}
    assert len(alerts) == len(freezes) == PARTITIONS
    counts["after the refusal: alerts, freezes"] = (len(alerts), len(freezes))
    for name, value in counts.items():
        print(f"ruleset: {name}: {value if isinstance(value, tuple) else f'{value:.2f}'}")


def test_backtest_runs_the_ruleset_of_a_saved_snapshot(
    services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from detectors.control_snapshot import fold
    from stream.cli import build_parser, cmd_backtest
    from stream.control_rules import build_ruleset

    rules = tmp_path / "rules.yaml"
    rules.write_text(CONTROL_TEST_RULES)
    meta = Provenance("c1", "alice", "device pairs", int(time.time() * 1000))
    record = build_ruleset(PUBLISHED, "published", meta)
    saved = tmp_path / "control.json"
    saved.write_bytes(orjson.dumps(fold([("ruleset", record)]).to_wire()))
    events = tmp_path / "events.jsonl"
    events.write_bytes(
        b"".join(
            orjson.dumps(
                {
                    "topic": "orders",
                    "value": orjson.loads(
                        order_json(f"e{i}", f"u{i}", format_rfc3339_ms(i), device_id="d")
                    ),
                }
            )
            + b"\n"
            for i in range(2)
        )
    )

    def backtest(*extra: str) -> list[dict[str, Any]]:
        out = tmp_path / "out.jsonl"
        argv = ["backtest", str(events), "--out", str(out), "--quiet", *extra]
        settings = services.settings(rules_file=rules)
        assert cmd_backtest(settings, build_parser().parse_args(argv)) == 0
        return [orjson.loads(line)["value"] for line in out.read_bytes().splitlines()]

    assert backtest() == []  # the rules file has no rule on devices
    assert f"ruleset_version {parse_rulebook(CONTROL_TEST_RULES).digest}" in capsys.readouterr().out
    steered = backtest("--control", str(saved))
    assert [(v.get("rule_id"), v["ruleset_version"]) for v in steered] == [
        (NEW_RULE, record.ruleset_version)
    ] * 2  # the alert and its freeze
    printed = capsys.readouterr().out
    assert f"ruleset_version {record.ruleset_version} (control-test 1, from a ruleset record)" in (
        printed
    )
