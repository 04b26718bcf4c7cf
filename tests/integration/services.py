"""Real Kafka and Redis for the integration suite.

By default the session starts its own single-node Kafka and redis-server on
free ports under a temporary directory (the same code as `fraudstream dev
up`), so tests never touch a developer's running services. Set
FRAUD_TEST_KAFKA_BOOTSTRAP and FRAUD_TEST_REDIS_URL to use existing ones.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream import devservices
from stream.settings import Settings, TopicNames

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A port p with p+1 also free (Kafka's controller listens on p+1)."""
    for _ in range(50):
        p = free_port()
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 1))
            except OSError:
                continue
        return p
    raise RuntimeError("no free port pair")


@dataclass
class Services:
    kafka_bootstrap: str
    redis_url: str
    redis_port: int
    layout: devservices.DevLayout | None

    def settings(self, **overrides: Any) -> Settings:
        """Settings with a unique app id, namespace and topic suffix per call."""
        tag = uuid.uuid4().hex[:8]
        base = Settings(
            kafka_bootstrap=self.kafka_bootstrap,
            redis_url=self.redis_url,
            redis_namespace=f"t{tag}",
            app_id=f"fraudstream-test-{tag}",
            topics=TopicNames().with_suffix(f"-{tag}"),
            web_port=free_port(),
            kafka_session_timeout_s=6.0,
            kafka_heartbeat_s=1.0,
            dev_partitions=4,
        )
        return base.replace(**overrides)


def start_services(tmp: Path) -> Services:
    bootstrap = os.environ.get("FRAUD_TEST_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("FRAUD_TEST_REDIS_URL")
    if bootstrap and redis_url:
        from urllib.parse import urlsplit

        return Services(bootstrap, redis_url, urlsplit(redis_url).port or 6379, None)
    layout = devservices.DevLayout(
        home=tmp, jar_cache=Path.home() / ".cache" / "fraudstream" / "kafka-jars"
    )
    redis_port = free_port()
    devservices.start_redis(layout, redis_port)
    kafka_port = free_port_pair()
    devservices.start_kafka(layout, kafka_port)
    return Services(
        f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0", redis_port, layout
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The FRAUD_* environment that reproduces `settings` in a subprocess."""
    env = {
        "FRAUD_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "FRAUD_REDIS_URL": settings.redis_url,
        "FRAUD_REDIS_NAMESPACE": settings.redis_namespace,
        "FRAUD_APP_ID": settings.app_id,
        "FRAUD_WEB_PORT": str(settings.web_port),
        "FRAUD_KAFKA_SESSION_TIMEOUT_S": str(settings.kafka_session_timeout_s),
        "FRAUD_KAFKA_HEARTBEAT_S": str(settings.kafka_heartbeat_s),
        "FRAUD_VELOCITY_THRESHOLD": str(settings.velocity_threshold),
        "FRAUD_VELOCITY_WINDOW_S": str(settings.velocity_window_s),
        "FRAUD_VELOCITY_COOLDOWN_S": str(settings.velocity_cooldown_s),
        "FRAUD_MAX_EVENT_BYTES": str(settings.max_event_bytes),
        "FRAUD_DEV_PARTITIONS": str(settings.dev_partitions),
        "FRAUD_BATCH_MAX": str(settings.batch_max),
    }
    for f in fields(settings.topics):
        env[f"FRAUD_TOPIC_{f.name.upper()}"] = getattr(settings.topics, f.name)
    return env


@dataclass
class WorkerProcess:
    settings: Settings
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
        env.update(settings_env(self.settings))
        env.update(self.extra_env)
        self.starts += 1
        log = open(self.log_path, "ab")  # noqa: SIM115
        log.write(f"\n===== start #{self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.cli", "worker"],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=REPO, start_new_session=True,
        )

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")


async def create_topics(settings: Settings) -> None:
    await devservices.create_topics(
        settings.kafka_bootstrap, list(settings.topics.inputs().values()),
        settings.dev_partitions, devservices.INPUT_TOPIC_MAX_BYTES,
    )
    await devservices.create_topics(
        settings.kafka_bootstrap, settings.topics.outputs(), settings.dev_partitions
    )


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024, linger_ms=5
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, value=v, key=k) for k, v in records]
        await producer.flush()
        for f in futures:
            await f
    finally:
        await producer.stop()


def order_json(event_id: str, user: str, at: str, merchant: str = "m-1", amount: int = 1500,
               **extra: Any) -> bytes:
    return orjson.dumps({
        "event_id": event_id, "occurred_at": at, "order_id": f"o-{event_id}", "user_id": user,
        "merchant_id": merchant, "amount_minor": amount, "currency": "EUR", **extra,
    })


async def read_all(bootstrap: str, topic: str, *, idle_s: float = 1.0) -> list[Any]:
    """Every record currently in `topic` (reads until end offsets are reached)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None,
        enable_auto_commit=False, max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        ends = await consumer.end_offsets(tps)
        out = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(await consumer.position(tp) >= ends[tp] for tp in tps):
                break
            batch = await consumer.getmany(timeout_ms=int(idle_s * 1000))
            for msgs in batch.values():
                out.extend(msgs)
        return out
    finally:
        await consumer.stop()


async def wait_committed(settings: Settings, topics: Sequence[str], timeout_s: float = 90,
                         worker: WorkerProcess | None = None) -> None:
    """Wait until the worker's group has committed every input record.

    faust flushes the producer before committing, so once inputs are
    committed all outputs derived from them are in Kafka.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.dev_partitions)]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while True:
            committed = await admin.list_consumer_group_offsets(settings.app_id)
            lagging = {tp: (committed[tp].offset if tp in committed else None, end)
                       for tp, end in ends.items()
                       if end > 0 and (tp not in committed or committed[tp].offset < end)}
            if not lagging:
                return
            if worker is not None and not worker.alive():
                raise AssertionError(f"worker died:\n{worker.log_tail()}")
            if time.monotonic() > deadline:
                tail = worker.log_tail() if worker else ""
                raise AssertionError(f"not committed within {timeout_s}s: {lagging}\n{tail}")
            await asyncio.sleep(0.25)
    finally:
        await consumer.stop()
        await admin.close()
