"""Real Kafka and Redis for the integration suite.

By default the session starts its own single-node Kafka and redis-server on
free ports under a temporary directory (the same code as `python -m devenv
up`), so tests never touch a developer's running services. Set
FRAUD_TEST_KAFKA_BOOTSTRAP and FRAUD_TEST_REDIS_URL to use existing ones.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition

from devenv import services as devservices
from stream import kafka_io
from stream.settings import Settings, TopicNames, to_env
from stream.topics import create_all_topics

REPO = Path(__file__).resolve().parents[2]
TEST_KEY_HASH_SECRET = "integration-tests-key-hash-secret-0123456789"


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
    data_root: Path  # under pytest's tmp dir: the workers' local files

    def settings(self, **overrides: Any) -> Settings:
        """Settings with a unique app id, namespace, topic suffix and data
        directory per call."""
        tag = uuid.uuid4().hex[:8]
        base = Settings(
            kafka_bootstrap=self.kafka_bootstrap,
            redis_url=self.redis_url,
            redis_namespace=f"t{tag}",
            key_hash_secret=TEST_KEY_HASH_SECRET,
            app_id=f"fraudstream-test-{tag}",
            data_dir=self.data_root / f"{tag}-data",
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
    data_root = tmp / "workers"
    data_root.mkdir(exist_ok=True)
    if bootstrap and redis_url:
        from urllib.parse import urlsplit

        return Services(bootstrap, redis_url, urlsplit(redis_url).port or 6379, None, data_root)
    layout = devservices.DevLayout(home=tmp, jar_cache=devservices.JAR_CACHE)
    redis_port = free_port()
    devservices.start_redis(layout, redis_port)
    kafka_port = free_port_pair()
    try:
        devservices.start_kafka(layout, kafka_port)
    except BaseException:
        devservices.down(layout)  # the session fixture never gets to stop Redis
        raise
    return Services(
        f"127.0.0.1:{kafka_port}",
        f"redis://127.0.0.1:{redis_port}/0",
        redis_port,
        layout,
        data_root,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The FRAUD_* environment that reproduces `settings` in a subprocess."""
    return to_env(settings)


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
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            start_new_session=True,
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


# Every input and output topic of a test's settings (its own suffixed names).
create_topics = create_all_topics


def order_json(
    event_id: str, user: str, at: str, merchant: str = "m-1", amount: int = 1500, **extra: Any
) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": at,
            "order_id": f"o-{event_id}",
            "user_id": user,
            "merchant_id": merchant,
            "amount_minor": amount,
            "currency": "EUR",
            **extra,
        }
    )


def wait_ready(worker: WorkerProcess, timeout_s: float = 120.0) -> dict[str, Any]:
    """Until /readyz reports Redis reachable and partitions assigned."""
    url = f"http://127.0.0.1:{worker.settings.web_port}/readyz"
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if not worker.alive():
            raise AssertionError(f"worker exited:\n{worker.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                body = orjson.loads(resp.read())
                if body.get("ready") and body.get("assigned_partitions", 0) > 0:
                    return body
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"worker not ready in {timeout_s}s ({body}):\n{worker.log_tail()}")


async def wait_caught_up(
    worker: WorkerProcess,
    topics: list[str],
    timeout_s: float = 90,
    exclude: Collection[TopicPartition] = (),
) -> None:
    s = worker.settings
    await kafka_io.wait_committed(
        s.kafka_bootstrap,
        s.app_id,
        topics,
        timeout_s,
        still_alive=lambda: None if worker.alive() else worker.log_tail(),
        exclude=exclude,
    )


TEST_RULES = """\
ruleset: test
ruleset_version: "1"
rules:
  - id: user_order_velocity
    version: 1
    triggers: [orders]
    entity: user
    metric: {kind: count, topics: [orders], window: 10m}
    compare: ">="
    threshold: 5
    severity: high
    cooldown: 1h
  - id: device_voucher_accounts
    version: 1
    triggers: [voucher-redemptions]
    entity: device
    metric: {kind: distinct, field: user_id, topics: [voucher-redemptions], window: 24h}
    compare: ">="
    threshold: 3
    severity: high
    action: {type: benefit_freeze, scope: vouchers, duration: 7d}
  - id: device_voucher_accounts_strict
    version: 1
    triggers: [voucher-redemptions]
    entity: device
    metric: {kind: distinct, field: user_id, topics: [voucher-redemptions], window: 24h}
    compare: ">="
    threshold: 3
    severity: critical
    action: {type: benefit_freeze, scope: all_benefits, duration: 14d}
"""


def write_test_rules(directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(TEST_RULES)
    return path


@dataclass
class LocalCluster:
    """A 3-master Redis Cluster from plain redis-server processes."""

    ports: list[int]
    procs: list[subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def cluster_port() -> int:
    """A free port p <= 55535 with the cluster bus port p + 10000 free too."""
    for _ in range(200):
        p = free_port()
        if p > 55_535:
            continue
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 10_000))
            except OSError:
                continue
        return p
    raise RuntimeError("no free cluster port")


def start_cluster(directory: Path) -> LocalCluster:
    binary = devservices.ensure_redis_server()
    ports = [cluster_port() for _ in range(3)]
    procs = []
    for port in ports:
        node_dir = directory / str(port)
        node_dir.mkdir(parents=True)
        log = open(node_dir / "redis.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(node_dir),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    cluster = LocalCluster(ports, procs)
    try:
        deadline = time.monotonic() + 20
        while not all(devservices.port_open("127.0.0.1", p) for p in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("cluster nodes did not start")
            time.sleep(0.05)
        create = subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout}{create.stderr}")
        while True:
            info = subprocess.run(
                ["redis-cli", "-p", str(ports[0]), "cluster", "info"],
                capture_output=True,
                text=True,
            ).stdout
            if "cluster_state:ok" in info:
                return cluster
            if time.monotonic() > deadline + 40:
                raise RuntimeError(f"cluster not ok: {info}")
            time.sleep(0.2)
    except Exception:
        cluster.stop()
        raise


def decisions_only(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The freezes of a freeze topic without its `action: release` records:
    a live worker also publishes releases (a freeze of old traffic has
    already expired by the wall clock), the backtest never does."""
    return [v for v in values if v.get("action") != "release"]
