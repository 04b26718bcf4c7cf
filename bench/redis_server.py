"""The Redis bench's private redis-server, plain or under valgrind's
callgrind, counting instructions only while the measured events run.

Wall and CPU microseconds on a shared machine vary several-fold from one
hour to the next; the instructions Redis executes for the same events, the
same script and the same server binary do not (two runs of the same commit
agreed to 0.4 %). The count includes the bench's own `INFO` calls around
each batch, the same on both sides of a comparison. So a change to a Lua
script is priced by `python -m bench redis --callgrind` on each side, one
after the other, in any order, and the ratio of instructions per event is
its effect.
Instructions are not time (a cache miss costs more than an add), which is
why the issue's figures stay µs in alternating runs; this is the quick,
repeatable check before those.

Instrumentation starts off (the server and the warm-up run at valgrind's
uninstrumented speed, about 5x slower than native) and is switched on and off
around the measured events with `callgrind_control`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from devenv.services import port_open

__all__ = ["Instructions", "callgrind_redis", "private_redis"]


@dataclass
class Instructions:
    """Switches counting on and off; `total` is known once the server stopped."""

    pid: int = 0
    out: Path = Path()
    total: int = field(default=0)

    def counting(self, on: bool) -> None:
        subprocess.run(
            ["callgrind_control", "-i", "on" if on else "off", str(self.pid)],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )

    def read_total(self) -> None:
        # `totals:`, not `summary:`: with instrumentation switched on and off,
        # callgrind writes a summary of 0 before the true totals.
        for line in self.out.read_text().splitlines():
            if line.startswith("totals:"):
                self.total = int(line.split()[1])
                return
        raise RuntimeError(f"no instruction total in {self.out}")


@contextmanager
def private_redis(wrapper: Sequence[str] = (), wait_s: float = 10) -> Iterator[str]:
    """A redis-server on a free port without persistence, started for the
    run and stopped after it; `wrapper` runs it under another program
    (valgrind)."""
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("redis-server not found (or pass --redis-url)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [*wrapper, server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", tmp],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_for(port, wait_s)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise


@contextmanager
def callgrind_redis() -> Iterator[tuple[str, Instructions]]:
    """A private Redis under callgrind and its instruction counter (total
    read once the server stopped)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--callgrind needs valgrind and callgrind_control")
    with tempfile.TemporaryDirectory() as tmp:
        counter = Instructions(out=Path(tmp) / "callgrind.out")
        wrapper = [valgrind, "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={counter.out}"]  # fmt: skip
        with private_redis(wrapper, wait_s=60) as url:
            counter.pid = _server_pid(url)
            yield url, counter
        counter.read_total()


def _server_pid(url: str) -> int:
    """The server's own pid: under valgrind, the process it was started as."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if port_open("127.0.0.1", port):
            return
        time.sleep(0.05)
    raise SystemExit(f"redis-server did not listen on {port} in {seconds} s")
