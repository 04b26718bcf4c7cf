"""Releases of freezes on real Kafka and Redis, two worker processes in one
group: `control release` publishes exactly one release record and the
incident does not freeze again; a freeze whose expiry passes yields exactly
one `expired` release."""

from __future__ import annotations

import asyncio
import io
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.timestamps import format_rfc3339_ms
from stream import control_cli, kafka_io
from stream.cli import build_parser
from stream.releases import RELEASE_INTERVAL_S
from stream.settings import Settings
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    order_json,
    wait_caught_up,
    wait_ready,
)
from tests.integration.test_control import CONTROL_TEST_RULES

pytestmark = pytest.mark.integration

# The control tests' rule, its freeze ten minutes long.
RULES = CONTROL_TEST_RULES.replace("duration: 1d", "duration: 10m")
DURATION_MS = 600_000
# After a release is seen: two more rounds of every worker, in which a
# second release would have been published.
SETTLE_S = 2 * RELEASE_INTERVAL_S + 0.5


@pytest.fixture(scope="module")
def workers(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[WorkerProcess]]:
    tmp = Path(tmp_path_factory.mktemp("releases"))
    assert "duration: 10m" in RULES
    (tmp / "rules.yaml").write_text(RULES)
    settings = services.settings(rules_file=tmp / "rules.yaml", actor="it-ops")
    asyncio.run(create_topics(settings))
    procs = [
        WorkerProcess(settings.replace(web_port=free_port()), tmp / f"worker-{i}.log")
        for i in range(2)
    ]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            wait_ready(proc)
        yield procs
    finally:
        for proc in procs:
            proc.stop()


def control(settings: Settings, *argv: str) -> None:
    args = build_parser().parse_args(["control", *argv])
    assert control_cli.run(settings, args, io.StringIO()) == 0


def fire(workers: list[WorkerProcess], user: str, at_ms: int, first: int = 0) -> None:
    """Two orders of `user` (the rule's threshold), the second at `at_ms`."""
    s = workers[0].settings
    values = [
        (
            b"m-1",
            order_json(f"{user}-{first + i}", user, format_rfc3339_ms(at_ms - 1000 + i * 1000)),
        )
        for i in range(2)
    ]
    asyncio.run(kafka_io.produce(s.kafka_bootstrap, s.topics.orders, values))
    asyncio.run(wait_caught_up(workers[0], [s.topics.orders], timeout_s=60))


def records_of(settings: Settings, user: str) -> list[dict[str, Any]]:
    messages = asyncio.run(
        kafka_io.read_from(settings.kafka_bootstrap, settings.topics.benefit_freezes)
    )
    return [r for r in (orjson.loads(m.value) for m in messages) if r["subject_id"] == user]


def wait_for(
    settings: Settings, user: str, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = records_of(settings, user)
        if done(found):
            return found
        time.sleep(0.2)
    raise AssertionError(f"not reached in {timeout_s}s: {records_of(settings, user)}")


def metric_sum(workers: list[WorkerProcess], series: str) -> float:
    total = 0.0
    for w in workers:
        url = f"http://127.0.0.1:{w.settings.web_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(series + " "):
                    total += float(line.split()[-1])
    return total


def releases(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in found if r["action"] == "release"]


def test_control_release_publishes_one_release_and_the_incident_stays_released(
    workers: list[WorkerProcess],
) -> None:
    s = workers[0].settings
    now = int(time.time() * 1000)
    fire(workers, "appeal", now)
    (frozen,) = wait_for(s, "appeal", lambda f: len(f) == 1, 10)
    started = time.monotonic()
    control(s, "release", frozen["freeze_id"], "--type", "appeal_upheld", "--code", "kyc_ok",
            "--reason", "documents checked", "--id", "op-1")  # fmt: skip
    wait_for(s, "appeal", lambda f: len(releases(f)) == 1, 10)
    seconds = time.monotonic() - started
    time.sleep(SETTLE_S)
    fire(workers, "appeal", now + 2000, first=2)  # more of the same incident
    control(s, "release", frozen["freeze_id"], "--type", "manual", "--code", "again",
            "--reason", "a second try", "--id", "op-2")  # fmt: skip
    time.sleep(SETTLE_S)
    found = records_of(s, "appeal")
    (release,) = releases(found)
    assert [r["action"] for r in found] == ["freeze", "release"], found
    assert release["releases_freeze_id"] == frozen["freeze_id"]
    assert (release["release_type"], release["actor"], release["control_id"]) == (
        "appeal_upheld",
        "it-ops",
        "op-1",
    )
    refused = 'fraud_releases_refused_total{reason="already_released"}'
    assert metric_sum(workers, refused) == 1
    published = 'fraud_releases_total{kind="benefit_freeze",release_type="appeal_upheld"}'
    assert metric_sum(workers, published) == 1
    print(
        f"\ncontrol release: {len(found) - 1} freeze, {len(releases(found))} release "
        f"(published {seconds:.2f}s after the command), second command refused "
        f"{metric_sum(workers, refused):.0f}x, two workers"
    )


def test_an_expired_freeze_is_released_once_by_two_workers(workers: list[WorkerProcess]) -> None:
    s = workers[0].settings
    now = int(time.time() * 1000)
    fire(workers, "brief", now - DURATION_MS + 3000)  # the freeze expires in about 3 s
    (frozen,) = wait_for(s, "brief", lambda f: len(f) == 1, 10)
    wait_for(s, "brief", lambda f: len(releases(f)) == 1, 15)
    late_ms = int(time.time() * 1000) - now - 3000
    time.sleep(SETTLE_S)
    found = records_of(s, "brief")
    (release,) = releases(found)
    assert release["releases_freeze_id"] == frozen["freeze_id"]
    assert (release["release_type"], release["actor"]) == ("expired", "system")
    assert release["issued_at"] == frozen["expires_at"]
    expired = 'fraud_releases_total{kind="benefit_freeze",release_type="expired"}'
    assert metric_sum(workers, expired) == 1
    print(
        f"\nexpiry: {len(found) - 1} freeze, {len(releases(found))} expired release "
        f"(seen about {late_ms} ms after expires_at), two workers"
    )
