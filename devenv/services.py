"""Local Kafka and Redis for development, the demo, the benchmarks and the
integration tests: a real single-node Kafka (KRaft, the official jars from
Maven Central) and a real redis-server, without Docker. Not part of the
product: the image ships neither this package nor its installers.

Processes are started in their own session, their pids recorded under the dev
home, and stopped by those pids only (SIGTERM, then SIGKILL), never by name.
`up` when already up is a no-op. Missing pieces are installed when possible
(Kafka jars via Maven into a cache; redis-server via apt when root), and
otherwise a ServiceError says what to do.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from stream.errors import ServiceError
from stream.settings import Settings

KAFKA_READY_TIMEOUT_S = 180.0
REDIS_READY_TIMEOUT_S = 20.0
# Shared by every dev home on the machine: the jars are fetched once.
JAR_CACHE = Path.home() / ".cache" / "fraudstream" / "kafka-jars"


@dataclass(frozen=True, slots=True)
class DevLayout:
    home: Path
    jar_cache: Path

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def redis_dir(self) -> Path:
        return self.home / "redis"


def dev_key_hash_secret(layout: DevLayout) -> str:
    """The key hash secret of the local services' Redis, made once and kept
    with their state (mode 0600): the demo's state lives across runs, so its
    secret must too, and no secret is shared between machines."""
    path = layout.home / "key-hash-secret"
    if not path.exists():
        layout.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def layout_of(settings: Settings) -> DevLayout:
    return DevLayout(home=settings.dev_home, jar_cache=JAR_CACHE)


def redis_port(settings: Settings) -> int:
    return urlsplit(settings.redis_url).port or 6379


def with_local_secret(settings: Settings) -> Settings:
    """Commands that run against the local services use their own key hash
    secret unless one is set."""
    if settings.key_hash_secret is not None:
        return settings
    return settings.replace(key_hash_secret=dev_key_hash_secret(layout_of(settings)))


def _asset(name: str) -> str:
    return resources.files("devenv.assets").joinpath(name).read_text(encoding="utf-8")


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def read_pid(pidfile: Path) -> int | None:
    """The recorded pid if that process is still alive (and is not a zombie)."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return None if stat.rsplit(")", 1)[-1].split()[0] == "Z" else pid


def stop_pid(pidfile: Path, timeout_s: float = 30.0, sig: signal.Signals = signal.SIGTERM) -> bool:
    """`sig` (SIGTERM: a controlled shutdown), then SIGKILL after `timeout_s`."""
    pid = read_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and read_pid(pidfile) is not None:
        time.sleep(0.2)
    if read_pid(pidfile) is not None:
        os.kill(pid, signal.SIGKILL)
        while read_pid(pidfile) is not None:
            time.sleep(0.1)
    pidfile.unlink(missing_ok=True)
    return True


# --------------------------------------------------------------------- Redis


def _apt_install(service: str, package: str, binaries: tuple[str, ...]) -> str | None:
    """Install a Debian package when running as root with apt; the path of
    its first binary, or None when that is not possible here. The package's
    own service is stopped: fraudstream runs its own processes."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    apt = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    for cmd in ([*apt, "update", "-qq"], [*apt, "install", "-y", "-qq", package]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ServiceError(service, f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    subprocess.run(["service", package, "stop"], capture_output=True)
    found = [shutil.which(b) for b in binaries]
    return found[0] if all(found) else None


def ensure_debian_binaries(
    service: str, package: str, binaries: tuple[str, ...], missing: str
) -> str:
    """The path of the first of `binaries` when all are on PATH, else after
    installing `package` (root with apt); ServiceError(`missing`) when
    neither is possible."""
    found = [shutil.which(b) for b in binaries]
    path = found[0] if all(found) else _apt_install(service, package, binaries)
    if path:
        return path
    raise ServiceError(service, missing)


def ensure_redis_server() -> str:
    return ensure_debian_binaries(
        "redis",
        "redis-server",
        ("redis-server",),
        "redis-server not found. Install it (Debian/Ubuntu: sudo apt-get install redis-server) "
        "or point FRAUD_REDIS_URL at a running Redis.",
    )


def start_redis(layout: DevLayout, port: int, extra_args: tuple[str, ...] = ()) -> int:
    pidfile = layout.redis_dir / "redis.pid"
    pid = read_pid(pidfile)
    if pid is not None and port_open("127.0.0.1", port):
        return pid
    if port_open("127.0.0.1", port):
        raise ServiceError("redis", f"port {port} is taken by a process we did not start")
    binary = ensure_redis_server()
    layout.redis_dir.mkdir(parents=True, exist_ok=True)
    log = open(layout.redis_dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(layout.redis_dir.resolve()),
            "--daemonize",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
            *extra_args,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pidfile.write_text(str(proc.pid))
    deadline = time.monotonic() + REDIS_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError("redis", f"redis-server exited ({proc.returncode}); see {log.name}")
        if _redis_ping(port):
            return proc.pid
        time.sleep(0.05)
    raise ServiceError("redis", f"no PONG on port {port} within {REDIS_READY_TIMEOUT_S}s")


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def ensure_prometheus() -> str:
    """prometheus + promtool (Debian's `prometheus` package): the observability
    tests run a real Prometheus and promtool's rule tests."""
    return ensure_debian_binaries(
        "prometheus",
        "prometheus",
        ("promtool", "prometheus"),
        "prometheus/promtool not found. Install them (Debian/Ubuntu: sudo apt-get install "
        "prometheus) to run the observability tests.",
    )


# --------------------------------------------------------------------- Kafka


def ensure_kafka_jars(layout: DevLayout) -> Path:
    jars = layout.jar_cache
    if any(jars.glob("kafka_2.13-*.jar")):
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError(
            "kafka",
            "Maven (mvn) is needed once to fetch the Kafka jars from Maven Central; "
            "install it (Debian/Ubuntu: sudo apt-get install maven) with Java 17+.",
        )
    if shutil.which("java") is None:
        raise ServiceError("kafka", "java not found: install a Java 17+ runtime")
    jars.mkdir(parents=True, exist_ok=True)
    pom = jars / "pom.xml"
    pom.write_text(_asset("kafka-pom.xml"))
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        f"-DoutputDirectory={jars}",
        "-DincludeScope=runtime",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not any(jars.glob("kafka_2.13-*.jar")):
        raise ServiceError(
            "kafka", f"fetching jars with Maven failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
        )
    return jars


def _java(jars: Path, kdir: Path, *args: str) -> list[str]:
    return [
        "java",
        "-Xms256m",
        "-Xmx512m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={kdir / 'log4j2.properties'}",
        "-cp",
        f"{jars}/*",
        *args,
    ]


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64. One in 64 of
    those starts with "-", which kafka-storage's argument parser takes for an
    option ("--cluster-id: expected one argument"): Kafka's own generator
    skips them, and so does this one."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start_kafka(layout: DevLayout, port: int) -> int:
    kdir = layout.kafka_dir.resolve()
    pidfile = kdir / "kafka.pid"
    pid = read_pid(pidfile)
    if pid is not None and port_open("127.0.0.1", port):
        return pid
    if port_open("127.0.0.1", port):
        raise ServiceError("kafka", f"port {port} is taken by a process we did not start")
    jars = ensure_kafka_jars(layout).resolve()
    kdir.mkdir(parents=True, exist_ok=True)
    controller_port = port + 1
    config = kdir / "server.properties"
    data = kdir / "data"
    config.write_text(
        _asset("server.properties").format(
            port=port, controller_port=controller_port, data_dir=data
        )
    )
    (kdir / "log4j2.properties").write_text(_asset("log4j2.properties"))
    if not (data / "meta.properties").exists():
        cluster_id = new_cluster_id()
        fmt = subprocess.run(
            _java(
                jars, kdir, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)
            ),
            capture_output=True,
            text=True,
        )
        if fmt.returncode != 0:
            raise ServiceError(
                "kafka", f"storage format failed:\n{fmt.stdout[-2000:]}{fmt.stderr[-2000:]}"
            )
    logfile = kdir / "kafka.log"
    log = open(logfile, "ab")  # noqa: SIM115 - handed to the child
    start_offset = logfile.stat().st_size
    proc = subprocess.Popen(
        _java(jars, kdir, "kafka.Kafka", str(config)),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pidfile.write_text(str(proc.pid))
    _wait_kafka(proc, logfile, start_offset, port)
    return proc.pid


def _wait_kafka(proc: subprocess.Popen[bytes], logfile: Path, start_offset: int, port: int) -> None:
    deadline = time.monotonic() + KAFKA_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = logfile.read_bytes()[start_offset:][-3000:].decode(errors="replace")
            raise ServiceError("kafka", f"broker exited ({proc.returncode}):\n{tail}")
        if port_open("127.0.0.1", port) and asyncio.run(_metadata_ok(f"127.0.0.1:{port}")):
            return
        time.sleep(0.5)
    raise ServiceError("kafka", f"broker not ready within {KAFKA_READY_TIMEOUT_S}s; see {logfile}")


async def _metadata_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def status(layout: DevLayout, kafka_port: int, redis_port: int) -> dict[str, str]:
    out = {}
    for name, pidfile, port in (
        ("kafka", layout.kafka_dir / "kafka.pid", kafka_port),
        ("redis", layout.redis_dir / "redis.pid", redis_port),
    ):
        pid = read_pid(pidfile)
        if pid is not None:
            state = "up" if port_open("127.0.0.1", port) else "starting"
            out[name] = f"{state} (pid {pid}, port {port})"
        else:
            taken = port_open("127.0.0.1", port)
            out[name] = f"down (port {port} {'in use by another process' if taken else 'free'})"
    return out


def down(layout: DevLayout) -> dict[str, bool]:
    return {
        "kafka": stop_pid(layout.kafka_dir / "kafka.pid", timeout_s=60),
        "redis": stop_pid(layout.redis_dir / "redis.pid", timeout_s=15),
    }
