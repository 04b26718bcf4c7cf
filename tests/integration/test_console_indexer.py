"""The console's indexer against a real PostgreSQL and Kafka: migrations on
an empty database, every topic indexed, a malformed record kept and
skipped, a replay of every topic that changes nothing, the retention purge,
and the `fraudstream console` process itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import pytest

from console.app import Console, connector
from console.indexer import Indexer
from console.metrics import ConsoleMetrics
from console.migrations import applied_migrations, migrate
from console.settings import ConsoleSettings, console_to_env
from console.users import hash_password
from detectors.rules import ActionKind, Severity
from detectors.rules_entities import EntityType
from detectors.verdicts import Verdict, VerdictKind, verdict_id_for
from devenv.postgres import create_database, database_url, start_postgres, stop_postgres
from devenv.services import JAR_CACHE, DevLayout
from stream import kafka_io
from stream.settings import Settings, to_env
from stream.topics import create_all_topics
from tests.console_records import (
    T0,
    alert,
    dumps,
    freeze,
    list_entry,
    release,
    rule_mode,
)
from tests.integration.services import REPO, Services, free_port

DAY = 86_400_000
HASH = hash_password("a password for the process test")
OLD = T0 - 100 * DAY
TABLES = {
    "alerts": "alert_id",
    "freezes": "freeze_id",
    "freeze_releases": "release_id",
    "control_records": "control_id",
    "audit_log": "idempotency_key",
    "verdicts": "verdict_id",
    "rejected_records": "topic, kafka_partition, kafka_offset",
}


def fresh_database(port: int) -> str:
    name = f"console_{uuid.uuid4().hex[:10]}"
    create_database(port, name)
    return database_url(port, name)


@dataclass
class World:
    settings: Settings
    url: str
    bad_offset: int
    metrics: ConsoleMetrics


def indexed_topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.alerts, t.benefit_freezes, t.fund_freezes, t.control, t.verdicts]


def too_big_alert() -> bytes:
    return dumps({**alert(300).to_wire(), "rule_version": 2**40})


async def publish(settings: Settings) -> int:
    """Every kind of record, a malformed one among them; the offset of the
    malformed alert on partition 0 (a good alert follows it there)."""
    t, boot = settings.topics, settings.kafka_bootstrap
    alerts = [alert(n) for n in range(30)] + [alert(100 + n, at_ms=OLD) for n in range(3)]
    await kafka_io.produce(
        boot, t.alerts, [(a.entity_id.encode(), dumps(a.to_wire())) for a in alerts]
    )
    before = await kafka_io.end_offsets(boot, [t.alerts])
    bad_offset = next(end for tp, end in before.items() if tp.partition == 0)
    # Valid JSON the mapping takes but the database refuses (rule_version is
    # a Postgres integer): its batch is written record by record.
    too_big = too_big_alert()
    after_bad = dumps(alert(200).to_wire())
    await kafka_io.produce(
        boot,
        t.alerts,
        [(b"u-x", b"{not json"), (b"u-x", after_bad), (b"u-y", too_big)],
        partition=0,
    )
    fund = [freeze(n, ActionKind.FUND_FREEZE, amount=1000 * n if n % 2 else None) for n in range(5)]
    benefit = [freeze(10 + n, ActionKind.BENEFIT_FREEZE) for n in range(5)]
    # Fund freeze 1's release comes before the freeze itself (the contract allows it).
    fund_records = [(b"m-1", release(fund[1], T0 + 10, "c-r1"))]
    fund_records += [(f.subject_id.encode(), dumps(f.to_wire())) for f in fund]
    await kafka_io.produce(boot, t.fund_freezes, fund_records)
    benefit_records = [(f.subject_id.encode(), dumps(f.to_wire())) for f in benefit]
    benefit_records.append((b"d-12", release(benefit[2], T0 + 20, "c-r2")))
    await kafka_io.produce(boot, t.benefit_freezes, benefit_records)
    control = [
        rule_mode("c-1"),
        list_entry("c-2", "m-7", at_ms=OLD),
        list_entry("c-3", "m-7", at_ms=T0),
        (b"mystery", dumps({"kind": "mystery"})),
        (b"rule-mode:gone", None),
    ]
    await kafka_io.produce(boot, t.control, control)
    await kafka_io.produce(boot, t.verdicts, verdict_records())
    return bad_offset


def verdict(n: int, kind: VerdictKind, decided_ms: int, rule: str = "user_order_velocity") -> bytes:
    v = Verdict(
        verdict_id_for(f"{n}-{kind}-{decided_ms}"), f"al_{n:032x}", kind, rule, Severity.HIGH,
        EntityType.USER, f"u-{n % 7}", None, T0, "ana", decided_ms, "checked the orders",
    )  # fmt: skip
    return v.to_bytes()


def verdict_records() -> list[tuple[bytes, bytes | None]]:
    """Alert 1 judged a true positive, then a false positive (that stands);
    alert 2 a true positive, alert 4 unsure, alert 999 (never indexed) a
    true positive of another rule, and a record that is no verdict."""
    TP, FP, UNSURE = VerdictKind.TRUE_POSITIVE, VerdictKind.FALSE_POSITIVE, VerdictKind.UNSURE
    return [
        (b"al-1", verdict(1, TP, T0 + 1000)),
        (b"al-1", verdict(1, FP, T0 + 2000)),
        (b"al-2", verdict(2, TP, T0 + 1000)),
        (b"al-4", verdict(4, UNSURE, T0 + 1000)),
        (b"al-999", verdict(999, TP, T0 + 1000, rule="payout_velocity_24h")),
        (b"al-x", b'{"schema_version": 1, "verdict": "true_positive"}'),
    ]


async def index_all(settings: Settings, url: str, group: str, metrics: ConsoleMetrics) -> None:
    """Run an indexer until its group has committed everything in the topics."""
    indexer = Indexer(settings, group, connector(url), metrics)
    task = asyncio.create_task(indexer.run())

    def alive() -> str | None:
        return repr(task.exception()) if task.done() else None

    try:
        await kafka_io.wait_committed(
            settings.kafka_bootstrap, group, indexed_topics(settings), 40, still_alive=alive
        )
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()  # type: ignore[arg-type]
            for table, key in TABLES.items()
        }


def counts(url: str) -> dict[str, int]:
    return {table: len(rows) for table, rows in snapshot(url).items()}


@pytest.fixture(scope="module")
async def world(services: Services, postgres_port: int) -> AsyncIterator[World]:
    settings = services.settings()
    await create_all_topics(settings)
    url = fresh_database(postgres_port)
    migrate(url)
    bad_offset = await publish(settings)
    metrics = ConsoleMetrics()
    await index_all(settings, url, f"console-{uuid.uuid4().hex[:6]}", metrics)
    yield World(settings, url, bad_offset, metrics)


EXPECTED = {
    "alerts": 34,
    "freezes": 10,
    "freeze_releases": 2,
    "control_records": 3,
    "audit_log": 3 + 5,
    "verdicts": 5,
    "rejected_records": 4,
}


def test_migrations_apply_on_an_empty_database_and_again_apply_nothing(postgres_port: int) -> None:
    url = fresh_database(postgres_port)
    assert applied_migrations(url) == []
    applied = [
        "0001_initial",
        "0002_sessions",
        "0003_verdicts",
        "0004_approvals",
        "0005_assignment",
    ]
    assert migrate(url) == applied
    assert migrate(url) == [] and applied_migrations(url) == applied
    assert counts(url) == dict.fromkeys(TABLES, 0)


def test_every_record_is_indexed(world: World) -> None:
    assert counts(world.url) == EXPECTED
    with psycopg.connect(world.url) as conn:
        state = dict(conn.execute("SELECT freeze_id, state FROM freezes").fetchall())
        released = [f"fz_{1:032x}", f"fz_{12:032x}"]
        assert sorted(k for k, v in state.items() if v == "released") == released
        value = conn.execute(
            "SELECT amount_minor, currency FROM freezes WHERE freeze_id = %s", (f"fz_{3:032x}",)
        ).fetchone()
        assert value == (3000, "EUR")
        audit = conn.execute("SELECT action, actor, reason FROM audit_log ORDER BY at").fetchall()
        assert ("control.rule-mode", "ana", "ticket 42") in audit


async def test_verdicts_are_indexed_audited_and_give_each_rule_its_precision(
    world: World,
) -> None:
    with psycopg.connect(world.url) as conn:
        audit = conn.execute(
            "SELECT action, target_id FROM audit_log WHERE action LIKE 'verdict.%%' ORDER BY 2, 1"
        ).fetchall()
        kinds = conn.execute(
            "SELECT error_kind FROM rejected_records WHERE topic = %s",
            (world.settings.topics.verdicts,),
        ).fetchall()
    assert ("verdict.false_positive", f"al_{1:032x}") in audit and len(audit) == 5
    assert kinds == [("bad_verdict",)]
    console = Console(world.settings, ConsoleSettings(database_url=world.url))
    await console.refresh_precision()
    gauge = console.metrics.rule_precision
    assert gauge.labels("user_order_velocity")._value.get() == 0.5  # 1 true, 1 false, 1 unsure
    assert gauge.labels("payout_velocity_24h")._value.get() == 1.0
    verdicts = console.metrics.rule_verdicts.labels("user_order_velocity", "unsure")
    assert verdicts._value.get() == 1


def test_a_malformed_record_is_kept_and_the_next_one_indexed(world: World) -> None:
    topic = world.settings.topics.alerts
    with psycopg.connect(world.url) as conn:
        rejected = conn.execute(
            "SELECT kafka_partition, kafka_offset, value, error_kind FROM rejected_records"
            " WHERE topic = %s ORDER BY kafka_offset",
            (topic,),
        ).fetchall()
        assert rejected == [
            (0, world.bad_offset, b"{not json", "invalid_json"),
            (0, world.bad_offset + 2, too_big_alert(), "storage_error"),
        ]
        after = conn.execute("SELECT 1 FROM alerts WHERE alert_id = %s", (f"al_{200:032x}",))
        assert after.fetchone() is not None
    metrics = world.metrics
    assert metrics.rejected.labels(topic, "invalid_json")._value.get() == 1
    assert metrics.rejected.labels(topic, "storage_error")._value.get() == 1
    assert metrics.indexed.labels(topic)._value.get() == 34
    assert metrics.lag.labels(topic)._value.get() == 0  # caught up


async def test_replaying_every_topic_changes_nothing(world: World) -> None:
    """A second group reads every topic from the start: the same rows, the
    console's own columns (status, assignee) untouched."""
    with psycopg.connect(world.url) as conn:
        conn.execute(
            "UPDATE alerts SET status = 'assigned', assignee = 'ana' WHERE alert_id = %s",
            (f"al_{7:032x}",),
        )
    before = snapshot(world.url)
    await index_all(world.settings, world.url, f"replay-{uuid.uuid4().hex[:6]}", ConsoleMetrics())
    assert snapshot(world.url) == before
    assert counts(world.url) == EXPECTED


async def test_the_retention_purge_keeps_the_newest_record_of_each_control_key(
    world: World,
) -> None:
    console = Console(world.settings, ConsoleSettings(database_url=world.url))
    purged = await console.purge_once(now_ms=T0 + DAY)
    assert purged == 3 + 1 + 1  # the old alerts, list entry c-2, its audit entry
    with psycopg.connect(world.url) as conn:
        oldest = conn.execute("SELECT min(occurred_at) FROM alerts").fetchone()
        controls = conn.execute("SELECT control_id FROM control_records ORDER BY 1").fetchall()
    assert oldest is not None and oldest[0].timestamp() * 1000 >= T0 - 90 * DAY
    assert [c for (c,) in controls] == ["c-1", "c-3"]
    assert await console.purge_once(now_ms=T0 + DAY) == 0


async def test_while_the_database_is_down_nothing_is_committed_then_everything_is_indexed(
    world: World, tmp_path: Any
) -> None:
    layout = DevLayout(home=tmp_path, jar_cache=JAR_CACHE)
    port = free_port()
    start_postgres(layout, port, "outage")
    url = database_url(port, "outage")
    migrate(url)
    stop_postgres(layout)
    group, metrics = f"outage-{uuid.uuid4().hex[:6]}", ConsoleMetrics()
    indexer = Indexer(world.settings, group, connector(url), metrics)
    task = asyncio.create_task(indexer.run())
    try:
        deadline = time.monotonic() + 20
        while metrics.database_errors._value.get() < 2:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.1)
        committed = await kafka_io.committed_offsets(world.settings.kafka_bootstrap, group)
        assert committed == {} or all(o <= 0 for o in committed.values())
        start_postgres(layout, port, "outage")
        await kafka_io.wait_committed(
            world.settings.kafka_bootstrap, group, indexed_topics(world.settings), 40
        )
        assert counts(url) == EXPECTED
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        stop_postgres(layout)


def test_the_console_process_migrates_indexes_and_reports_ready(
    world: World, postgres_port: int, tmp_path: Any
) -> None:
    # The local server trusts loopback, so any password works: this one must
    # never reach the log.
    url = fresh_database(postgres_port).replace("fraudstream@", "fraudstream:s3cr3t-pw@")
    users = tmp_path / "users.yaml"
    users.write_text(f"users: [{{username: ana, role: viewer, password_hash: '{HASH}'}}]\n")
    console = ConsoleSettings(
        database_url=url,
        group_id=f"proc-{uuid.uuid4().hex[:6]}",
        web_port=free_port(),
        users_file=users,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    env.update(to_env(world.settings) | console_to_env(console))
    log = open(tmp_path / "console.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "console"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        body = wait_ready(proc, console.web_port, tmp_path / "console.log")
        assert body["database"] is True and body["assigned_partitions"] > 0
        deadline = time.monotonic() + 30
        while counts(console.database_url)["alerts"] < EXPECTED["alerts"]:
            assert time.monotonic() < deadline, counts(console.database_url)
            time.sleep(0.2)
        metrics = fetch(console.web_port, "/metrics").decode()
        # The pages, from the installed package's templates and static files.
        assert b"<h1>Log in</h1>" in fetch(console.web_port, "/login")
        assert fetch(console.web_port, "/static/htmx.min.js").startswith(b"var htmx=")
        assert "fraud_console_records_indexed_total" in metrics
    finally:
        proc.terminate()
        code = proc.wait(30)
    assert code == 0, (tmp_path / "console.log").read_text()
    assert "s3cr3t-pw" not in (tmp_path / "console.log").read_text()


def fetch(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
        return bytes(resp.read())


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            body: dict[str, Any] = orjson.loads(fetch(port, "/readyz"))
            if body.get("ready"):
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"console not ready:\n{log.read_text()}")
