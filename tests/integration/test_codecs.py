"""Input compressed by producers, and record batches a worker cannot read.

Producers compress record batches with gzip, snappy, lz4 or zstd; the worker
decodes all four (live decisions equal the backtest's). A batch it cannot
decode (here: lz4 with the codec library hidden from the worker process)
stops only its partition, visibly, without committing past it; after a
restart with the library back, the partition's records are processed."""

from __future__ import annotations

import asyncio
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from detectors.events import Topic
from devenv import services as devservices
from stream import kafka_io
from stream.kafka_io import Compression
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)
from tests.integration.test_live_vs_backtest import (
    INCIDENT,
    Decisions,
    assert_same_decisions,
    backtest_decisions,
    keyed,
    live_decisions,
    live_run,
    scenario,
)
from tests.integration.test_worker_restart import consumed

PARTITIONS = 4
CODEC_OF_PARTITION = [Compression.GZIP, Compression.SNAPPY, Compression.LZ4, Compression.ZSTD]
TOPICS = (Topic.ORDERS, Topic.VOUCHER_REDEMPTIONS)


def by_partition(pairs: list[tuple[bytes, bytes]]) -> list[list[tuple[bytes, bytes]]]:
    """Records split as Kafka's default partitioner places their keys."""
    choose, every = DefaultPartitioner(), list(range(PARTITIONS))
    out: list[list[tuple[bytes, bytes]]] = [[] for _ in every]
    for key, value in pairs:
        out[choose(key, every, every)].append((key, value))
    return out


def codecs_on_disk(services: Services, topic: str) -> dict[int, set[str]]:
    """Per partition, the codecs of the batches the broker stored (Kafka's
    own log dump tool, reading the files of the broker this session runs)."""
    assert services.layout is not None
    kdir = services.layout.kafka_dir.resolve()
    files = [kdir / "data" / f"{topic}-{p}" / f"{0:020d}.log" for p in range(PARTITIONS)]
    jars = devservices.ensure_kafka_jars(services.layout).resolve()
    dump = subprocess.run(
        devservices._java(
            jars, kdir, "kafka.tools.DumpLogSegments", "--files", ",".join(map(str, files))
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dump.returncode == 0, dump.stdout[-2000:] + dump.stderr[-2000:]
    out: dict[int, set[str]] = {}
    for section in dump.stdout.split("Dumping ")[1:]:
        partition = re.search(rf"{re.escape(topic)}-(\d+)/", section)
        assert partition, section[:300]
        out[int(partition.group(1))] = set(re.findall(r"compresscodec: (\w+)", section))
    return out


async def test_every_producer_codec_gives_the_backtests_decisions(
    services: Services, tmp_path: Path
) -> None:
    """One worker, each partition of both input topics written with another
    codec (so one fetch mixes all four)."""
    rules = write_test_rules(tmp_path)
    docs = scenario()
    backtest = await backtest_decisions(services, rules, docs, tmp_path)

    async def send(worker: WorkerProcess) -> None:
        s = worker.settings
        for topic in TOPICS:
            for partition, pairs in enumerate(by_partition(keyed(docs, topic))):
                codec = CODEC_OF_PARTITION[partition]
                name = s.topics.input_name(topic)
                await kafka_io.produce(s.kafka_bootstrap, name, pairs, codec, partition)
        await wait_caught_up(worker, [s.topics.input_name(t) for t in TOPICS])
        status, body = readyz(s)
        assert (status, body["blocked_partitions"]) == (200, []), body

    settings = services.settings(rules_file=rules)
    assert_same_decisions(await live_run(settings, tmp_path / "worker.log", send), backtest)
    if services.layout is not None:  # the broker's files are ours to read
        stored = codecs_on_disk(services, settings.topics.orders)
        assert stored == {p: {c.value} for p, c in enumerate(CODEC_OF_PARTITION)}


def readyz(settings: Settings) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{settings.web_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read())
    except OSError:  # not listening yet
        return 0, {}


def metric(settings: Settings, name: str, topic: str) -> float | None:
    url = f"http://127.0.0.1:{settings.web_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as resp:
        text = resp.read().decode()
    found = re.search(rf'^{name}\{{topic="{re.escape(topic)}"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else None


def hide_cramjam(directory: Path) -> dict[str, str]:
    """Environment for a worker process that cannot import cramjam (as if it
    were not installed): aiokafka then has no snappy, lz4 or zstd."""
    directory.mkdir()
    (directory / "sitecustomize.py").write_text('import sys\nsys.modules["cramjam"] = None\n')
    return {"PYTHONPATH": str(directory)}


async def committed(settings: Settings, tp: TopicPartition) -> int | None:
    return (await kafka_io.committed_offsets(settings.kafka_bootstrap, settings.app_id)).get(tp)


async def wait_blocked(settings: Settings, worker: WorkerProcess, failures: int) -> dict[str, Any]:
    """The one stopped partition once it has failed `failures` times."""
    for _ in range(300):
        assert worker.alive(), worker.log_tail()
        status, body = readyz(settings)
        stopped = body.get("blocked_partitions", [])
        if stopped and stopped[0]["failures"] >= failures:
            assert status == 503 and not body["ready"] and len(stopped) == 1, body
            return dict(stopped[0])
        await asyncio.sleep(0.2)
    raise AssertionError(f"no stopped partition reported: {body}\n{worker.log_tail()}")


async def send_one_unreadable(
    worker: WorkerProcess, parts: dict[Topic, list[list[tuple[bytes, bytes]]]], head: int
) -> None:
    """orders partition 2: `head` plain records (processed first), the rest in
    lz4; every other partition plain."""
    s, produce = worker.settings, kafka_io.produce
    records = parts[Topic.ORDERS][2]
    await produce(s.kafka_bootstrap, s.topics.orders, records[:head], None, 2)
    await wait_caught_up(worker, [s.topics.orders])
    await produce(s.kafka_bootstrap, s.topics.orders, records[head:], Compression.LZ4, 2)
    for topic in TOPICS:
        for partition, pairs in enumerate(parts[topic]):
            if (topic, partition) != (Topic.ORDERS, 2):
                name = s.topics.input_name(topic)
                await produce(s.kafka_bootstrap, name, pairs, None, partition)


def stopped_in(workers: list[WorkerProcess]) -> list[tuple[int, dict[str, Any]]]:
    """(worker index, stopped partition) over `workers`, once their group is settled."""
    bodies = [readyz(w.settings)[1] for w in workers]
    assigned = [body.get("assigned_partitions", 0) for body in bodies]
    if min(assigned) == 0 or sum(assigned) != 4 * PARTITIONS:
        return []
    if any(body["rebalancing"] for body in bodies):
        return []
    return [(i, b) for i, body in enumerate(bodies) for b in body["blocked_partitions"]]


async def rebalance_keeps_it_stopped(
    first: WorkerProcess, tmp_path: Path, bad: TopicPartition, offset: int
) -> None:
    """A second worker joins the group: whichever now owns the partition
    fetches it again from the committed offset, stops at the same offset and
    reports it; the other worker is ready."""
    (before,) = readyz(first.settings)[1]["blocked_partitions"]
    second = WorkerProcess(first.settings.replace(web_port=free_port()), tmp_path / "worker2.log")
    second.extra_env = first.extra_env
    second.start()
    workers = [first, second]
    try:
        for _ in range(300):
            stopped = stopped_in(workers)
            fetched_again = [
                b for i, b in stopped if i == 1 or b["failures"] > before["failures"] + 1
            ]
            if fetched_again:
                break
            assert second.alive(), second.log_tail()
            await asyncio.sleep(0.2)
        assert len(stopped) == 1 and fetched_again, stopped
        owner, entry = stopped[0]
        assert (entry["partition"], entry["offset"]) == (bad.partition, offset)
        # The joining worker is ready once it has also read the control topic.
        for _ in range(150):
            statuses = [readyz(w.settings)[0] for w in workers]
            if statuses[1 - owner] == 200:
                break
            await asyncio.sleep(0.2)
        assert statuses == [503 if i == owner else 200 for i in (0, 1)], readyz(
            workers[1 - owner].settings
        )
        gauges = [metric(w.settings, "fraud_partitions_blocked", bad.topic) or 0 for w in workers]
        assert gauges == [1 if i == owner else 0 for i in (0, 1)]
        assert await committed(first.settings, bad) == offset
    finally:
        second.stop()


def assert_complete_or_degraded(live: Decisions, backtest: Decisions, blocked_topic: str) -> None:
    """The backtest's incidents, none lost and none extra. Rules reading the
    blocked topic decide degraded (users span partitions, so their counts may
    lack the blocked records): marked, with an id of their own, no freeze.
    The others decide exactly as the backtest."""
    for kind, key in INCIDENT.items():
        assert sorted((d[key[0]], d[key[1]]) for d in live[kind]) == sorted(
            (d[key[0]], d[key[1]]) for d in backtest[kind]
        ), kind
    expected = {a["alert_id"] for a in backtest["alerts"]}
    degraded = [a for a in live["alerts"] if a["evidence"].get("degraded")]
    assert all(blocked_topic in a["evidence"]["degraded_reason"] for a in degraded)
    assert {a["alert_id"] for a in live["alerts"] if a not in degraded} <= expected
    assert {f["freeze_id"] for f in live["freezes"]} == {
        f["freeze_id"] for f in backtest["freezes"]
    }
    print(f"\n{len(degraded)} of {len(live['alerts'])} alerts degraded, reading {blocked_topic}")


async def test_an_unreadable_batch_stops_its_partition_and_nothing_else(
    services: Services, tmp_path: Path
) -> None:
    rules = write_test_rules(tmp_path)
    docs = scenario()
    settings = services.settings(rules_file=rules, blocked_retry_s=1.0)
    bad, head = TopicPartition(settings.topics.orders, 2), 5
    parts = {t: by_partition(keyed(docs, t)) for t in TOPICS}
    unreadable = {value for _, value in parts[Topic.ORDERS][2][head:]}
    readable = [d for d in docs if orjson.dumps(d["value"]) not in unreadable]
    backtest = await backtest_decisions(services, rules, readable, tmp_path)
    await create_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.extra_env = hide_cramjam(tmp_path / "no-cramjam")
    worker.start()
    inputs = [settings.topics.input_name(t) for t in TOPICS]
    try:
        wait_ready(worker)
        await send_one_unreadable(worker, parts, head)
        await wait_caught_up(worker, inputs, exclude=[bad])
        stopped = await wait_blocked(settings, worker, failures=3)  # retries fail too
        assert (stopped["topic"], stopped["partition"], stopped["offset"]) == (bad.topic, 2, head)
        assert stopped["reason"].startswith("UnsupportedCodecError"), stopped
        assert await committed(settings, bad) == head
        assert metric(settings, "fraud_partitions_blocked", bad.topic) == 1
        assert metric(settings, "fraud_undecodable_batches_total", bad.topic) == 1
        assert_complete_or_degraded(await live_decisions(settings), backtest, Topic.ORDERS.value)
        await rebalance_keeps_it_stopped(worker, tmp_path, bad, head)
    finally:
        worker.stop()
    assert await committed(settings, bad) == head  # stopping commits nothing past it
    log = worker.log_path.read_text(errors="replace")
    assert re.search(rf"ERROR.*partition {re.escape(bad.topic)}/2 stopped at offset {head}", log)

    worker.extra_env = {}  # the operator installs the library and restarts
    worker.start()
    try:
        wait_ready(worker)
        await wait_caught_up(worker, inputs)
        assert consumed(worker) == len(unreadable)
        assert readyz(settings)[1]["blocked_partitions"] == []
    finally:
        worker.stop()
    assert await committed(settings, bad) == head + len(unreadable)
