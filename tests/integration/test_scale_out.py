"""Three workers in one consumer group over 8-partition topics, one joining and
one leaving mid-stream: the same decisions (ids included) as the backtest of
the same events, and every event applied exactly once."""

from __future__ import annotations

from pathlib import Path

import orjson

from stream import kafka_io
from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)
from tests.integration.test_live_vs_backtest import scenario


async def test_workers_joining_and_leaving_decide_like_one(
    services: Services, tmp_path: Path
) -> None:
    rules = write_test_rules(tmp_path)
    docs = scenario(seed=23)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    bt = services.settings(rules_file=rules)
    await run_backtest(bt, load_rulebook(bt), events, tmp_path / "bt.jsonl", None)
    expected = {
        orjson.loads(line)["value"]["alert_id"]
        for line in (tmp_path / "bt.jsonl").read_bytes().splitlines()
        if orjson.loads(line)["topic"] == bt.topics.alerts
    }

    settings = services.settings(rules_file=rules, dev_partitions=8)
    await create_topics(settings)
    names = {
        "orders": settings.topics.orders,
        "voucher-redemptions": settings.topics.voucher_redemptions,
    }
    chunks: list[dict[str, list[tuple[bytes | None, bytes | None]]]] = [{}, {}, {}]
    for i, d in enumerate(docs):
        value = d["value"]
        assert isinstance(value, dict)
        chunks[i * 3 // len(docs)].setdefault(names[str(d["topic"])], []).append(
            (str(value["merchant_id"]).encode(), orjson.dumps(value))
        )

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(settings.replace(web_port=free_port()), tmp_path / f"{name}.log")

    a, b, c = worker("a"), worker("b"), worker("c")
    inputs = list(names.values())
    try:
        a.start()
        wait_ready(a)
        for topic, pairs in chunks[0].items():
            await kafka_io.produce(settings.kafka_bootstrap, topic, pairs)
        b.start()  # joins mid-stream
        wait_ready(b)
        for topic, pairs in chunks[1].items():
            await kafka_io.produce(settings.kafka_bootstrap, topic, pairs)
        a.stop()  # leaves mid-stream (graceful)
        c.start()
        wait_ready(c)
        for topic, pairs in chunks[2].items():
            await kafka_io.produce(settings.kafka_bootstrap, topic, pairs)
        await wait_caught_up(b, inputs, timeout_s=180)
    finally:
        for w in (a, b, c):
            w.stop()
    live = [
        orjson.loads(r.value)
        for r in await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.alerts)
    ]
    got = {x["alert_id"] for x in live}
    print(
        f"\nalerts: backtest {len(expected)}, three workers {len(got)} "
        f"({len(live)} published, {len(live) - len(got)} republished after the hand-overs)"
    )
    assert got == expected
