"""Redis with `requirepass` and an ACL user: the worker authenticates from the
URL in its settings, and the secret never shows in logs, reprs or metrics."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from devenv import services as devservices
from stream import kafka_io
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    order_json,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)

ADMIN_SECRET = "admin-S3cret-pw"
USER_SECRET = "fraud-S3cret-pw"


def start_secured_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            devservices.ensure_redis_server(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            ADMIN_SECRET,
            "--user",
            "fraud",
            "on",
            f">{USER_SECRET}",
            "~*",
            "&*",
            "+@all",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while not devservices.port_open("127.0.0.1", port):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    return proc


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()
    except OSError:
        return 0, ""


async def test_worker_uses_an_acl_user_and_never_prints_secrets(
    services: Services, tmp_path: Path
) -> None:
    port = free_port()
    redis_proc = start_secured_redis(port)
    try:
        settings = services.settings(
            rules_file=write_test_rules(tmp_path),
            redis_url=f"redis://fraud:{USER_SECRET}@127.0.0.1:{port}/0",
        )
        await create_topics(settings)
        worker = WorkerProcess(settings, tmp_path / "worker.log")
        worker.start()
        try:
            wait_ready(worker)
            values = [order_json(f"s{i}", "sec-user", f"2026-11-02T12:0{i}:00Z") for i in range(6)]
            await kafka_io.produce(
                settings.kafka_bootstrap, settings.topics.orders, [(b"m", v) for v in values]
            )
            await wait_caught_up(worker, [settings.topics.orders])
            _, metrics = fetch(f"http://127.0.0.1:{settings.web_port}/metrics")
            _, ready = fetch(f"http://127.0.0.1:{settings.web_port}/readyz")
        finally:
            worker.stop()
        alerts = await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.alerts)
        assert len(alerts) == 1  # it really worked through the ACL user

        wrong = settings.replace(redis_url=f"redis://fraud:wrong-{USER_SECRET}@127.0.0.1:{port}/0")
        bad = WorkerProcess(wrong, tmp_path / "bad-worker.log")
        bad.start()
        try:
            deadline = time.monotonic() + 60
            status, failed = 0, False
            # Not ready for the right reason: the store refused, and said so
            # (a worker is also not ready before it has read the control topic).
            while time.monotonic() < deadline and not (status == 503 and failed):
                status, _ = fetch(f"http://127.0.0.1:{wrong.web_port}/readyz")
                failed = "Redis not ready" in (tmp_path / "bad-worker.log").read_text(
                    errors="replace"
                )
                time.sleep(0.5)
            assert status == 503  # not ready, and still alive
            assert bad.alive()
        finally:
            bad.stop()
    finally:
        redis_proc.terminate()
        redis_proc.wait(30)
    logs = (tmp_path / "worker.log").read_text(errors="replace")
    logs += (tmp_path / "bad-worker.log").read_text(errors="replace")
    assert "redis://***@127.0.0.1" in logs  # the settings are logged, masked
    assert "Redis not ready" in logs or "AuthenticationError" in logs or "WRONGPASS" in logs
    for text in (logs, metrics, ready):
        assert USER_SECRET not in text and ADMIN_SECRET not in text
    print(
        f"\nACL user worked (1 alert); wrong password → /readyz 503; secrets searched in "
        f"{len(logs)} bytes of logs, {len(metrics)} of metrics: not found"
    )
