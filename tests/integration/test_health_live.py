"""Merchant health on real Kafka and Redis, one worker: the worker and
`fraudstream backtest` publish the same snapshots for the same events, and
a merchant freeze lowers the published score until a false-positive
release restores it."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import random
import time
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.events import Topic
from detectors.rules import Severity
from detectors.rules_entities import EntityType
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms
from detectors.verdicts import Verdict, VerdictKind, verdict_id_for
from stream import health_cli, kafka_io
from stream.backtest import run_backtest
from stream.cli import build_parser, cmd_score
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    order_json,
    wait_caught_up,
    wait_ready,
)
from tests.integration.test_control import cleanup_policy
from tests.integration.test_live_vs_backtest import keyed
from tests.integration.test_releases import control, metric_sum
from tests.unit.test_health_feed import RULES as FEED_RULES

pytestmark = pytest.mark.integration

# The unit tests' rules: a merchant's burst of orders freezes its payouts.
RULES = (
    FEED_RULES.replace("threshold: 5", "threshold: 4")
    .replace("duration: 3d", "duration: 7d")
    .replace(
        "emit_interval: 1m\n",
        "emit_interval: 1m\n  rates: {refund_rate: {min_volume: 5},"
        " merchant_refund_rate: {min_volume: 5}}\n",
    )
)
T0 = parse_rfc3339_ms("2026-11-02T06:00:00Z")
MIN = 60_000
INPUTS = (Topic.ORDERS, Topic.REFUNDS)


def scenario(seed: int = 7) -> list[dict[str, Any]]:
    """Orders and refunds of 30 merchants over 10 hours; a third of them burst
    (and are frozen). A merchant's events are at least two minutes apart, more
    than the event-time merge's slack, so the worker sees each merchant's
    events in the file's order although orders and refunds are two topics."""
    rng = random.Random(seed)
    lines: list[tuple[int, dict[str, Any]]] = []
    for m in range(30):
        t, n = T0 + rng.randrange(60) * MIN + m, 0
        while t < T0 + 600 * MIN:
            n += 1
            eid = f"m{m}-{n}"
            if n > 3 and rng.random() < 0.3:
                by = rng.choice(["user", "merchant"])
                value = {
                    "event_id": eid, "occurred_at": format_rfc3339_ms(t), "refund_id": eid,
                    "order_id": f"m{m}-{n - 1}", "user_id": f"u{n}", "merchant_id": f"m{m}",
                    "amount_minor": 900, "currency": "EUR", "initiated_by": by,
                }  # fmt: skip
                lines.append((t, {"topic": "refunds", "value": value}))
            else:
                order = orjson.loads(order_json(eid, f"u{n}", format_rfc3339_ms(t), f"m{m}"))
                lines.append((t, {"topic": "orders", "value": order}))
            burst = m % 3 == 0 and 40 < n < 46
            t += 2 * MIN if burst else rng.randrange(8, 40) * MIN
    lines.sort(key=lambda x: x[0])
    return [doc for _, doc in lines]


@pytest.fixture(scope="module")
def worker(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    tmp = Path(tmp_path_factory.mktemp("health"))
    (tmp / "rules.yaml").write_text(RULES)
    settings = services.settings(rules_file=tmp / "rules.yaml", actor="it-ops")
    asyncio.run(create_topics(settings))
    proc = WorkerProcess(settings, tmp / "worker.log")
    try:
        proc.start()
        wait_ready(proc)
        yield proc
    finally:
        proc.stop()


def snapshots(settings: Settings, topic: str | None = None) -> list[dict[str, Any]]:
    name = topic or settings.topics.merchant_health
    found = asyncio.run(kafka_io.read_from(settings.kafka_bootstrap, name))
    return [orjson.loads(r.value) for r in found]


def comparable(records: list[dict[str, Any]], merchants: set[str]) -> list[dict[str, Any]]:
    """Everything but the wall clock, per merchant in order."""
    kept = [
        {k: v for k, v in r.items() if k != "computed_at"}
        for r in records
        if r["merchant_id"] in merchants
    ]
    return sorted(kept, key=lambda r: (r["merchant_id"], r["as_of"]))


def test_the_snapshot_topic_is_compacted_and_the_history_is_not(worker: WorkerProcess) -> None:
    s = worker.settings
    assert asyncio.run(cleanup_policy(s, s.topics.merchant_health)) == "compact"
    assert asyncio.run(cleanup_policy(s, s.topics.merchant_health_changes)) == "delete"


def test_the_worker_and_the_backtest_publish_the_same_snapshots(
    worker: WorkerProcess, tmp_path: Path
) -> None:
    s = worker.settings
    docs = scenario()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    asyncio.run(run_backtest(s, load_rulebook(s), events, tmp_path / "bt.jsonl", None))
    out = [orjson.loads(line) for line in (tmp_path / "bt.jsonl").read_bytes().splitlines()]
    for topic in INPUTS:
        values = keyed(docs, topic)
        asyncio.run(kafka_io.produce(s.kafka_bootstrap, s.topics.input_name(topic), values))
    asyncio.run(wait_caught_up(worker, [s.topics.input_name(t) for t in INPUTS]))
    merchants = {f"m{m}" for m in range(30)}
    for topic in (s.topics.merchant_health, s.topics.merchant_health_changes):
        backtest = comparable([d["value"] for d in out if d["topic"] == topic], merchants)
        live = comparable(snapshots(s, topic), merchants)
        print(f"\n{topic}: backtest {len(backtest)}, live {len(live)}")
        assert live == backtest
    bands = {r["band"] for r in backtest}
    assert {"insufficient_data", "healthy", "at_risk"} <= bands  # bursts were frozen
    assert len(backtest) >= 30


def wait_for(
    settings: Settings,
    done: Callable[[dict[str, Any]], bool],
    timeout_s: float = 20,
    merchant: str = "m-fp",
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [r for r in snapshots(settings) if r["merchant_id"] == merchant and done(r)]
        if found:
            return found[-1]
        time.sleep(0.3)
    raise AssertionError(f"not published in {timeout_s}s: {snapshots(settings)[-3:]}")


def test_a_merchant_freeze_lowers_the_score_and_a_false_positive_release_restores_it(
    worker: WorkerProcess,
) -> None:
    s = worker.settings
    now = int(time.time() * 1000)
    values = [
        (
            b"m-fp",
            order_json(f"fp-{i}", f"u{i}", format_rfc3339_ms(now - (8 - 2 * i) * MIN), "m-fp"),
        )
        for i in range(4)
    ]
    asyncio.run(kafka_io.produce(s.kafka_bootstrap, s.topics.orders, values))
    frozen = wait_for(s, lambda r: r["score"] < 1000)
    assert (frozen["score"], frozen["band"]) == (600, "at_risk")
    freeze_id = frozen["reasons"][0]["evidence"][0]
    assert freeze_id.startswith("fz_")
    control(s, "release", freeze_id, "--type", "false_positive", "--code", "fp",
            "--reason", "a catering order", "--id", "op-fp")  # fmt: skip
    restored = wait_for(
        s, lambda r: r["score"] == 1000 and r["computed_at"] > frozen["computed_at"]
    )
    assert restored["band"] == "healthy" and restored["as_of"] == frozen["as_of"]
    changes = [
        r for r in snapshots(s, s.topics.merchant_health_changes) if r["merchant_id"] == "m-fp"
    ]
    assert [c["band"] for c in changes][-2:] == ["at_risk", "healthy"]
    out = io.StringIO()  # the CLI reads the same snapshot through the store
    assert health_cli.run(s, build_parser().parse_args(["health", "m-fp"]), out) == 0
    assert out.getvalue().startswith("merchant m-fp: score 1000/1000, band healthy\n")
    assert "violations on record: none" in out.getvalue()
    assert metric_sum([worker], 'fraud_merchant_health_merchants{band="healthy"}') >= 1
    args = build_parser().parse_args(["health", "m-unknown"])
    assert health_cli.run(s, args, io.StringIO()) == 1


def test_a_true_positive_verdict_costs_points_and_a_bad_one_is_dead_lettered(
    worker: WorkerProcess,
) -> None:
    s = worker.settings
    now = int(time.time() * 1000)
    values = [
        (b"m-vd", order_json(f"vd-{i}", f"u{i}", format_rfc3339_ms(now - (8 - i) * MIN), "m-vd"))
        for i in range(3)
    ]
    asyncio.run(kafka_io.produce(s.kafka_bootstrap, s.topics.orders, values))
    clean = wait_for(s, lambda r: r["band"] == "healthy", merchant="m-vd")
    alert = "al_" + "7" * 32
    tp = Verdict(
        verdict_id_for("it-tp"), alert, VerdictKind.TRUE_POSITIVE, "merchant_order_burst",
        Severity.CRITICAL, EntityType.MERCHANT, "m-vd", "m-vd", now - 8 * MIN, "it-analyst", now,
    )  # fmt: skip
    bad = b'{"schema_version": 1, "verdict": "true_positive"}'
    asyncio.run(
        kafka_io.produce(
            s.kafka_bootstrap, s.topics.verdicts, [(b"x", bad), (b"al", tp.to_bytes())]
        )
    )
    hit = wait_for(s, lambda r: r["score"] == 600, merchant="m-vd")
    assert hit["band"] == "at_risk" and hit["as_of"] == clean["as_of"]
    assert hit["reasons"][0]["evidence"] == [f"vd:{alert}", alert, tp.verdict_id]
    unsure = dataclasses.replace(tp, verdict=VerdictKind.UNSURE, verdict_id=verdict_id_for("it-u"))
    asyncio.run(
        kafka_io.produce(s.kafka_bootstrap, s.topics.verdicts, [(b"al", unsure.to_bytes())])
    )
    wait_for(
        s, lambda r: r["score"] == 1000 and r["computed_at"] > hit["computed_at"], merchant="m-vd"
    )
    letters = asyncio.run(kafka_io.read_from(s.kafka_bootstrap, s.topics.dlq))
    mine = [orjson.loads(r.value) for r in letters]
    assert any(
        d["source_topic"] == s.topics.verdicts and d["error"]["field"] == "verdict_id" for d in mine
    )
    out = io.StringIO()  # the same records as labels: the unsure stands
    with redirect_stdout(out):
        assert cmd_score(s, build_parser().parse_args(["score", "--verdicts-topic"])) == 0
    rows = {line.split()[0]: line.split()[1:] for line in out.getvalue().splitlines()[1:]}
    assert rows["merchant_order_burst"] == ["1", "0", "0", "1", "-"]
    assert "skipped line 1: missing_field" in out.getvalue()
