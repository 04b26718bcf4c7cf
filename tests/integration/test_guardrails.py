"""The guardrails on real Kafka and Redis with two worker processes: a rule
made to misfire is demoted to shadow within its freeze budget, a flood of
fund freezes trips the circuit breaker, and the kill switch stops every
freeze within 5 s. Each test prints its counts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.control_snapshot import ControlSnapshot
from detectors.guardrails import BUCKET_MS
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms
from stream import kafka_io
from stream.control_follower import fold_messages
from stream.kafka_io import read_from
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    order_json,
    wait_ready,
)
from tests.integration.test_control import control, metric
from tests.unit.test_enforcement_guard import BENEFIT, FUND, payout_json, rule_yaml

pytestmark = pytest.mark.integration

BUDGET = 5
MIN_FREEZES = 4
IN_FLIGHT_S = 1.0  # the longest a batch takes from prepare to publish here
EFFECT_BUDGET_S = 5.0
RULES = (
    "rules:\n"
    + rule_yaml("misfire", "orders", "user", BENEFIT, BUDGET)
    + rule_yaml("flood", "payouts", "merchant", FUND, 10_000)
    + rule_yaml("steady", "refunds", "user", BENEFIT, 10_000)
)


def iso(ms: int) -> str:
    return format_rfc3339_ms(ms)


def refund_json(event_id: str, user: str, at: str) -> bytes:
    return order_json(
        event_id, user, at, merchant=f"m-{user}", refund_id=f"r-{event_id}",
        initiated_by="merchant", reason="late",
    )  # fmt: skip


def read(settings: Settings, topic: str) -> list[dict[str, Any]]:
    messages = asyncio.run(read_from(settings.kafka_bootstrap, topic))
    return [orjson.loads(m.value) for m in messages if m.value is not None]


def of_rule(records: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [r for r in records if r["rule_id"] == rule]


def send(settings: Settings, topic: str, pairs: list[tuple[bytes, bytes]]) -> None:
    asyncio.run(kafka_io.produce(settings.kafka_bootstrap, topic, pairs))
    asyncio.run(wait_caught_up_any(settings, [topic]))


async def wait_caught_up_any(settings: Settings, topics: list[str]) -> None:
    await kafka_io.wait_committed(settings.kafka_bootstrap, settings.app_id, topics, 60)


def wait_metric(workers: list[WorkerProcess], series: str, value: float) -> float:
    """Seconds until every worker's `series` reads `value`."""
    started = time.monotonic()
    while time.monotonic() - started < EFFECT_BUDGET_S:
        if all(metric(w, series) == value for w in workers):
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{series} not {value} on every worker within {EFFECT_BUDGET_S}s")


def control_snapshot(settings: Settings) -> ControlSnapshot:
    messages = asyncio.run(read_from(settings.kafka_bootstrap, settings.topics.control))
    return fold_messages(ControlSnapshot(), messages, lambda item: None)


@pytest.fixture(scope="module")
def workers(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    tmp = Path(tmp_path_factory.mktemp("guardrails"))
    (tmp / "rules.yaml").write_text(RULES)
    settings = services.settings(
        rules_file=tmp / "rules.yaml",
        actor="it-ops",
        breaker_min_freezes=MIN_FREEZES,
        breaker_freeze_share=0.01,
    )
    asyncio.run(create_topics(settings))
    procs = [
        WorkerProcess(settings.replace(web_port=free_port()), tmp / f"worker-{name}.log")
        for name in "ab"
    ]
    try:
        for proc in procs:
            proc.start()
        assigned = [wait_ready(proc)["assigned_partitions"] for proc in procs]
        while not all(assigned):  # the first may hold every partition until the second joins
            time.sleep(0.3)
            assigned = [wait_ready(proc)["assigned_partitions"] for proc in procs]
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def test_a_misfiring_rule_is_demoted_within_its_budget(workers: list[WorkerProcess]) -> None:
    s = workers[0].settings
    now = int(time.time() * 1000) // BUCKET_MS * BUCKET_MS  # every order in one bucket
    orders = [
        (f"m-{i}".encode(), order_json(f"mis-{i}", f"user-{i}", iso(now + i), merchant=f"m-{i}"))
        for i in range(40)
    ]
    send(s, s.topics.orders, orders)
    freezes = of_rule(read(s, s.topics.benefit_freezes), "misfire")
    alerts = of_rule(read(s, s.topics.alerts), "misfire")
    held = [a for a in alerts if a.get("suppressed_by") == "guardrail" or a["mode"] == "shadow"]
    assert len(freezes) <= BUDGET and len(freezes) == len({f["subject_id"] for f in freezes})
    assert len(alerts) == 40 and len(held) == 40 - len(freezes), alerts
    wait_metric(workers, 'fraud_control_records{kind="rule-mode"}', 1)
    snapshot = control_snapshot(s)
    record = snapshot.records["rule-mode:misfire"]
    assert record.meta.actor == "guardrail" and snapshot.rule_mode("misfire") == "shadow"
    assert record.to_wire() in read(s, s.topics.control_audit)  # the history keeps it too
    demotions = sum(
        metric(w, 'fraud_guardrail_demotions_total{rule="misfire"}') or 0 for w in workers
    )
    suppressed = sum(
        metric(w, 'fraud_enforcement_suppressed_total{reason="guardrail"}') or 0 for w in workers
    )
    print(
        f"guardrail: budget {BUDGET}; {len(freezes)} freezes made before demotion, "
        f"{len(held)} of 40 alerts held ({int(suppressed)} marked guardrail, the rest shadow); "
        f"rule-mode record by {record.meta.actor}: {record.meta.reason!r}; "
        f"demotions counted by the workers: {int(demotions)}"
    )
    assert demotions >= 1 and suppressed >= 1


def test_a_flood_of_fund_freezes_trips_the_breaker(workers: list[WorkerProcess]) -> None:
    s = workers[0].settings
    now = int(time.time() * 1000)
    payouts = [
        (f"f-{i}".encode(), payout_json(f"flood-{i}", f"f-{i}", iso(now + i))) for i in range(20)
    ]
    send(s, s.topics.payouts, payouts)
    freezes = of_rule(read(s, s.topics.fund_freezes), "flood")
    alerts = of_rule(read(s, s.topics.alerts), "flood")
    marked = [a for a in alerts if a.get("suppressed_by") == "breaker"]
    assert len(alerts) == 20 and len(freezes) + len(marked) == 20, (freezes, alerts)
    # max(4, 0.01 x the merchants active this hour): at most 4, exactly 4 across both workers
    assert len(freezes) == MIN_FREEZES
    took = wait_metric(workers, "fraud_breaker_tripped", 1)
    snapshot = control_snapshot(s)
    assert snapshot.breaker_tripped and snapshot.breaker is not None
    assert snapshot.breaker.meta.actor == "breaker"
    assert snapshot.breaker.to_wire() in read(s, s.topics.control_audit)
    print(
        f"breaker: {len(freezes)} fund freezes, then tripped; {len(marked)} of 20 alerts marked "
        f"suppressed_by breaker; both workers show it tripped {took:.2f}s after the check; "
        f"reason {snapshot.breaker.meta.reason!r}"
    )
    control(s, "breaker", "reset", "--reason", "drill over")
    wait_metric(workers, "fraud_breaker_tripped", 0)


def test_the_kill_switch_stops_every_freeze_within_5s(workers: list[WorkerProcess]) -> None:
    s = workers[0].settings
    stop = threading.Event()
    sent = []

    def feed() -> None:
        i = 0
        while not stop.is_set():
            at = int(time.time() * 1000)
            user = f"steady-{i}"
            asyncio.run(
                kafka_io.produce(
                    s.kafka_bootstrap,
                    s.topics.refunds,
                    [(user.encode(), refund_json(user, user, iso(at)))],
                )
            )
            sent.append(at)
            i += 1
            time.sleep(0.1)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        time.sleep(1.5)  # freezes flowing
        issued = time.time()
        control(s, "kill-switch", "on", "--reason", "drill")
        in_effect = wait_metric(workers, "fraud_control_kill_switch", 1)
        time.sleep(2.0)  # events keep coming after the switch
    finally:
        stop.set()
        feeder.join(10)
    asyncio.run(wait_caught_up_any(s, [s.topics.refunds]))
    freezes = of_rule(read(s, s.topics.benefit_freezes), "steady")
    alerts = of_rule(read(s, s.topics.alerts), "steady")
    last = max(parse_rfc3339_ms(f["issued_at"]) for f in freezes) / 1000
    killed = [a for a in alerts if a.get("suppressed_by") == "kill_switch"]
    # A batch judged under the old snapshot may still conclude just after the
    # swap (a batch takes its snapshot when it is prepared); one judged
    # under the new one must not freeze.
    settled_by = issued + in_effect + IN_FLIGHT_S
    after = [f for f in freezes if parse_rfc3339_ms(f["issued_at"]) / 1000 > settled_by]
    print(
        f"kill switch: {len(sent)} refunds sent, {len(freezes)} freezes before it, "
        f"{len(killed)} alerts marked kill_switch after it; in effect on both workers "
        f"{in_effect:.2f}s after the command; last freeze issued {last - issued:.2f}s after it"
    )
    control(s, "kill-switch", "off", "--reason", "drill over")
    assert freezes and killed and after == []
    assert last - issued < EFFECT_BUDGET_S
