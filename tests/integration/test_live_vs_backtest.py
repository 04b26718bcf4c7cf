"""One event file through real Kafka (4-partition topics) to a running worker
and through `fraudstream backtest`: the same alert and freeze ids."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from detectors.events import Topic
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms
from stream import kafka_io
from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    decisions_only,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)

T0 = parse_rfc3339_ms("2026-11-02T06:00:00Z")
MIN = 60_000


def scenario(seed: int = 11) -> list[dict[str, object]]:
    """Orders and voucher redemptions over 12 hours: calm users, bursting users
    (orders spread over many merchants, so over every partition) and device farms."""
    rng = random.Random(seed)
    lines: list[tuple[int, dict[str, object]]] = []
    n = 0

    def order(user: str, t: int) -> None:
        nonlocal n
        n += 1
        merchant = f"m{rng.randrange(50)}"
        lines.append(
            (
                t,
                {
                    "topic": "orders",
                    "value": {
                        "event_id": f"o{n}",
                        "occurred_at": format_rfc3339_ms(t),
                        "order_id": f"o{n}",
                        "user_id": user,
                        "merchant_id": merchant,
                        "amount_minor": rng.randrange(500, 5000),
                        "currency": "EUR",
                    },
                },
            )
        )

    def redeem(user: str, device: str, t: int) -> None:
        nonlocal n
        n += 1
        lines.append(
            (
                t,
                {
                    "topic": "voucher-redemptions",
                    "value": {
                        "event_id": f"r{n}",
                        "occurred_at": format_rfc3339_ms(t),
                        "redemption_id": f"r{n}",
                        "voucher_id": "welcome",
                        "user_id": user,
                        "merchant_id": f"m{rng.randrange(50)}",
                        "face_value_minor": 1000,
                        "subsidy_minor": 500,
                        "currency": "EUR",
                        "device_id": device,
                    },
                },
            )
        )

    for u in range(150):
        for _ in range(4):
            order(f"calm{u}", T0 + rng.randrange(12 * 60) * MIN)
    for u in range(25):
        start = T0 + rng.randrange(11 * 60) * MIN
        for i in range(rng.randrange(5, 9)):
            order(f"burst{u}", start + i * rng.randrange(20, 80) * 1000)
    for d in range(60):
        accounts = 4 if d < 8 else 2
        for a in range(accounts):
            redeem(f"dev{d}-acct{a}", f"dev{d}", T0 + rng.randrange(12 * 60) * MIN)
    lines.sort(key=lambda x: x[0])
    return [doc for _, doc in lines]


KINDS = {"alerts": "alert_id", "freezes": "freeze_id"}
INCIDENT = {"alerts": ("rule_id", "entity_id"), "freezes": ("rule_id", "subject_id")}
Decisions = dict[str, list[dict[str, str]]]


async def backtest_decisions(
    services: Services, rules: Path, docs: list[dict[str, object]], tmp_path: Path
) -> Decisions:
    """The alerts and benefit freezes `fraudstream backtest` gives for `docs`."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    settings = services.settings(rules_file=rules)
    await run_backtest(settings, load_rulebook(settings), events, tmp_path / "bt.jsonl", None)
    out: Decisions = {"alerts": [], "freezes": []}
    for line in (tmp_path / "bt.jsonl").read_bytes().splitlines():
        doc = orjson.loads(line)
        if doc["topic"] == settings.topics.alerts:
            out["alerts"].append(doc["value"])
        elif doc["topic"] == settings.topics.benefit_freezes:
            out["freezes"].append(doc["value"])
    return out


async def live_decisions(settings: Settings) -> Decisions:
    bootstrap = settings.kafka_bootstrap
    return {
        kind: decisions_only(
            [orjson.loads(r.value) for r in await kafka_io.read_from(bootstrap, topic)]
        )
        for kind, topic in (
            ("alerts", settings.topics.alerts),
            ("freezes", settings.topics.benefit_freezes),
        )
    }


def assert_same_decisions(live: Decisions, backtest: Decisions) -> None:
    for kind, id_field in KINDS.items():
        ids_live = {d[id_field] for d in live[kind]}
        ids_bt = {d[id_field] for d in backtest[kind]}
        differing = len(ids_live ^ ids_bt) // 2
        print(
            f"\n{kind}: backtest {len(ids_bt)}, live {len(ids_live)}; "
            f"{differing} of {len(ids_bt)} incidents carry a different id "
            f"({100 * differing / max(len(ids_bt), 1):.1f}%)"
        )
        assert ids_bt, "the scenario must produce decisions"
        assert ids_live == ids_bt
        # None lost, none extra: the same incidents (rule, entity) on both paths.
        key = INCIDENT[kind]
        assert sorted((d[key[0]], d[key[1]]) for d in live[kind]) == sorted(
            (d[key[0]], d[key[1]]) for d in backtest[kind]
        )


def keyed(docs: list[dict[str, object]], topic: Topic) -> list[tuple[bytes, bytes]]:
    """(merchant id, value) of `docs` on one input topic, as producers key them."""
    return [
        (str(d["value"]["merchant_id"]).encode(), orjson.dumps(d["value"]))  # type: ignore[index]
        for d in docs
        if d["topic"] == topic.value
    ]


async def live_run(
    settings: Settings, log: Path, send: Callable[[WorkerProcess], Awaitable[None]]
) -> Decisions:
    """The decisions a worker publishes for what `send` produces (`send`
    returns once the worker has processed it)."""
    await create_topics(settings)
    worker = WorkerProcess(settings, log)
    worker.start()
    try:
        wait_ready(worker)
        await send(worker)
    finally:
        worker.stop()
    return await live_decisions(settings)


async def test_live_worker_and_backtest_agree(services: Services, tmp_path: Path) -> None:
    rules = write_test_rules(tmp_path)
    docs = scenario()
    backtest = await backtest_decisions(services, rules, docs, tmp_path)

    async def send(worker: WorkerProcess) -> None:
        s = worker.settings
        for topic in (Topic.ORDERS, Topic.VOUCHER_REDEMPTIONS):
            await kafka_io.produce(
                s.kafka_bootstrap, s.topics.input_name(topic), keyed(docs, topic)
            )
        await wait_caught_up(worker, [s.topics.orders, s.topics.voucher_redemptions])

    live = await live_run(services.settings(rules_file=rules), tmp_path / "worker.log", send)
    assert_same_decisions(live, backtest)
    assert len(backtest["alerts"]) >= 25 + 8
