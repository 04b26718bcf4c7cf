"""Local PostgreSQL for the console: Debian's `postgresql` package (15),
started from its binaries on loopback with its data under the dev home,
like Redis and Kafka (`python -m devenv up`). No Docker, no system service.

The server refuses to run as root. When the dev tools run as root (CI, a
fresh machine), initdb and postgres run inside a user namespace that maps
root's uid to the package's `postgres` user: the server sees an ordinary
user, the files stay root's, and it can reach a data directory below
directories only root may enter (pytest's temporary directories), with
no capability of root's.

Local connections are trusted (loopback only, no password), like the local
Redis; the console reaches it with its default `FRAUD_CONSOLE_DATABASE_URL`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg import sql

from devenv.services import DevLayout, _apt_install, port_open, read_pid, stop_pid
from stream.errors import ServiceError

__all__ = [
    "POSTGRES_READY_TIMEOUT_S",
    "create_database",
    "database_url",
    "ensure_postgres",
    "postgres_dir",
    "start_postgres",
    "status_postgres",
    "stop_postgres",
]

POSTGRES_READY_TIMEOUT_S = 30.0
VERSIONS = ("15", "16", "17")
SUPERUSER = "fraudstream"


def postgres_dir(layout: DevLayout) -> Path:
    return layout.home / "postgres"


def _find_bindir() -> Path | None:
    """Where initdb and postgres are: on PATH, else Debian's versioned
    directory (the package puts only the client tools on PATH)."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("postgres"):
        return Path(on_path).resolve().parent
    for version in VERSIONS:
        bindir = Path(f"/usr/lib/postgresql/{version}/bin")
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def ensure_postgres() -> Path:
    """The directory of initdb and postgres, installing the package when
    missing and possible (root with apt)."""
    bindir = _find_bindir()
    if bindir is None and _apt_install("postgres", "postgresql", ("psql",)) is not None:
        bindir = _find_bindir()
    if bindir is not None:
        return bindir
    raise ServiceError(
        "postgres",
        "PostgreSQL not found. Install it (Debian/Ubuntu: sudo apt-get install postgresql) "
        "or point FRAUD_CONSOLE_DATABASE_URL at a running PostgreSQL.",
    )


def _as_unprivileged(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        account = pwd.getpwnam("postgres")
        uid, gid = account.pw_uid, account.pw_gid
    except KeyError:
        uid, gid = 65534, 65534  # nobody
    return ["unshare", "--user", f"--map-user={uid}", f"--map-group={gid}", *cmd]


def _initdb(bindir: Path, data: Path, log: Path) -> None:
    proc = subprocess.run(
        _as_unprivileged(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        ),
        capture_output=True,
        text=True,
    )
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise ServiceError("postgres", f"initdb failed:\n{(proc.stdout + proc.stderr)[-2000:]}")


def start_postgres(layout: DevLayout, port: int, database: str = "fraudstream") -> int:
    """Start (or find running) the local server on 127.0.0.1:`port` and
    make sure `database` exists; its pid."""
    pdir = postgres_dir(layout).resolve()
    pidfile = pdir / "postgres.pid"
    pid = read_pid(pidfile)
    if pid is not None and port_open("127.0.0.1", port):
        create_database(port, database)
        return pid
    if port_open("127.0.0.1", port):
        raise ServiceError("postgres", f"port {port} is taken by a process we did not start")
    bindir = ensure_postgres()
    pdir.mkdir(parents=True, exist_ok=True)
    data = pdir / "data"
    if not (data / "PG_VERSION").exists():
        _initdb(bindir, data, pdir / "initdb.log")
    log = open(pdir / "postgres.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        _as_unprivileged(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
            ]
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pidfile.write_text(str(proc.pid))
    _wait_ready(proc, port, log.name)
    create_database(port, database)
    return proc.pid


def _wait_ready(proc: subprocess.Popen[bytes], port: int, logname: str) -> None:
    deadline = time.monotonic() + POSTGRES_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError("postgres", f"postgres exited ({proc.returncode}); see {logname}")
        try:
            psycopg.connect(database_url(port, "postgres"), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            time.sleep(0.1)
    raise ServiceError("postgres", f"not ready on port {port} within {POSTGRES_READY_TIMEOUT_S}s")


def database_url(port: int, database: str = "fraudstream") -> str:
    """The URL of `database` on the local server."""
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


def create_database(port: int, database: str) -> None:
    with psycopg.connect(database_url(port, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
        if exists.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def stop_postgres(layout: DevLayout) -> bool:
    """SIGTERM waits for clients to leave; a dev server should not: SIGINT
    is Postgres's fast shutdown (clients disconnected, a clean checkpoint)."""
    return stop_pid(postgres_dir(layout) / "postgres.pid", timeout_s=30, sig=signal.SIGINT)


def status_postgres(layout: DevLayout, port: int) -> str:
    pid = read_pid(postgres_dir(layout) / "postgres.pid")
    if pid is not None:
        return f"{'up' if port_open('127.0.0.1', port) else 'starting'} (pid {pid}, port {port})"
    taken = port_open("127.0.0.1", port)
    return f"down (port {port} {'in use by another process' if taken else 'free'})"
