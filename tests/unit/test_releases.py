"""Releases of freezes without services: the release record (deterministic,
in the published schemas), the release desk of two workers sharing one
in-memory book (exactly one release per command and per expiry, a crash
between claim and publish redone by the other worker with the same id), and
the pipeline not re-issuing a released freeze."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from detectors.control import Provenance, Release
from detectors.control_snapshot import ControlSnapshot, fold
from detectors.decisions import Suppression
from detectors.events import Topic
from detectors.release_types import ReleaseType
from detectors.releases import EXPIRED, ActiveFreeze, ReleaseSpec, release_for
from stream.metrics import Metrics
from stream.pipeline import Pipeline
from stream.releases import (
    LEASE_MS,
    Refusal,
    ReleaseDesk,
    ReleaseTimer,
    Round,
    acked_publisher,
    retention_ms,
)
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store.freezes import MemoryFreezeBook
from stream.store.memory_store import MemoryStore
from tests.integration.services import write_test_rules
from tests.store_cases.freezes import NOW, command, freeze
from tests.store_cases.pipeline import at, on, records
from tests.store_cases.requests import process

SCHEMAS = Path(__file__).resolve().parents[2] / "contract" / "schemas"
SETTINGS = Settings()


def schema(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    )


def test_a_release_is_the_same_record_whoever_builds_it() -> None:
    a, spec = freeze(1), command("c1")
    one, two = release_for(a, spec), release_for(ActiveFreeze.from_json(a.to_json()), spec)
    assert one.to_json() == two.to_json() and one.release_id.startswith("rl_")
    assert ReleaseSpec.from_json(spec.to_json()) == spec
    assert release_for(a, command("c2")).release_id != one.release_id
    wire = one.to_wire()
    assert wire["action"] == "release" and wire["releases_freeze_id"] == a.freeze_id
    assert wire["issued_at"] == "2027-01-15T07:59:55.000Z" and wire["control_id"] == "c1"
    assert one.key() == a.subject_id.encode()


def test_an_expired_release_is_dated_at_the_expiry_by_the_system() -> None:
    wire = release_for(freeze(1, NOW + 7), EXPIRED).to_wire()
    assert wire["release_type"] == "expired" and wire["actor"] == "system"
    assert wire["issued_at"] == "2027-01-15T08:00:00.007Z" and "control_id" not in wire


@pytest.mark.parametrize("fund", [False, True])
def test_releases_match_the_published_schemas(fund: bool) -> None:
    v = schema("fund-freezes" if fund else "benefit-freezes")
    for spec in (EXPIRED, command("c1", ReleaseType.BREAKER_REVERSAL)):
        wire = release_for(freeze(1, fund=fund), spec).to_wire()
        v.validate(wire)
        assert not v.is_valid({**wire, "release_type": "forgotten"})
        assert not v.is_valid({k: x for k, x in wire.items() if k != "releases_freeze_id"})


class Worker:
    """One worker's release desk and what it published."""

    def __init__(self, book: MemoryFreezeBook, fail_publish: bool = False) -> None:
        self.published: list[tuple[str, bytes, dict[str, Any]]] = []
        self.fail_publish = fail_publish
        self.desk = ReleaseDesk(SETTINGS, book, self.publish)

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        if self.fail_publish:
            raise ConnectionError("broker gone")
        self.published.append((topic, key, orjson.loads(value)))

    async def round(self, snapshot: ControlSnapshot, now_ms: int) -> Round:
        return await self.desk.round(snapshot, now_ms)


def release_command(freeze_id: str, control_id: str, at_ms: int = NOW) -> Release:
    meta = Provenance(control_id, "alice", "appeal upheld", at_ms)
    return Release(freeze_id, ReleaseType.APPEAL_UPHELD, "appeal", meta)


def steering(*records: Release) -> ControlSnapshot:
    return fold([(r.key(), r) for r in records])


async def test_a_release_command_is_published_once_by_two_workers() -> None:
    book = MemoryFreezeBook()
    a, b = freeze(1, NOW + 3_600_000), freeze(2, NOW + 3_600_000, fund=True)
    await book.register([a, b])
    w1, w2 = Worker(book), Worker(book)
    snapshot = steering(release_command(b.freeze_id, "c1"))
    rounds = [await w.round(snapshot, NOW + 10) for w in (w1, w2, w1, w2)]
    published = w1.published + w2.published
    assert len(published) == 1, published
    topic, key, wire = published[0]
    assert (topic, key) == (SETTINGS.topics.fund_freezes, b"m-2")
    assert wire["releases_freeze_id"] == b.freeze_id and wire["release_type"] == "appeal_upheld"
    assert wire["amount_minor"] == 125_000 and wire["currency"] == "EUR"
    assert all(not r.refused and not r.failed for r in rounds)
    metrics = Metrics()
    rounds[0].record(metrics)
    assert metrics.releases.labels("fund_freeze", "appeal_upheld")._value.get() == 1
    # A restarted worker reads the same record again: nothing more.
    assert (await Worker(book).round(snapshot, NOW + 20)).published == []


async def test_a_command_with_nothing_to_release_is_counted_once() -> None:
    book = MemoryFreezeBook()
    a = freeze(1)
    await book.register([a])
    w1, w2 = Worker(book), Worker(book)
    await w1.round(steering(release_command(a.freeze_id, "c1")), NOW)
    snapshot = steering(release_command(a.freeze_id, "c2"), release_command(f"fz_{9:032x}", "c3"))
    rounds = [await w.round(snapshot, NOW + 5) for w in (w1, w2, Worker(book))]
    assert [r.refused for r in rounds] == [
        {Refusal.ALREADY_RELEASED: 1, Refusal.UNKNOWN: 1},
        {},
        {},
    ]
    assert len(w1.published) == 1 and w2.published == []


async def test_an_expired_freeze_is_released_once_by_two_workers() -> None:
    book = MemoryFreezeBook()
    a, b = freeze(1, NOW + 1_000), freeze(2, NOW + 60_000)
    await book.register([a, b])
    w1, w2 = Worker(book), Worker(book)
    empty = ControlSnapshot()
    assert (await w1.round(empty, NOW + 999)).published == []
    for now in (NOW + 1_000, NOW + 1_000, NOW + 1_500, NOW + 59_999):
        await w2.round(empty, now)
        await w1.round(empty, now)
    published = w1.published + w2.published
    assert [p[2]["releases_freeze_id"] for p in published] == [a.freeze_id]
    assert published[0][2]["release_type"] == "expired"


async def test_a_worker_dying_before_its_publish_leaves_the_release_to_another() -> None:
    book = MemoryFreezeBook()
    a = freeze(1, NOW)
    await book.register([a])
    dying, other = Worker(book, fail_publish=True), Worker(book)
    assert (await dying.round(ControlSnapshot(), NOW)).failed
    assert (await other.round(ControlSnapshot(), NOW + LEASE_MS - 1)).published == []
    done = await other.round(ControlSnapshot(), NOW + LEASE_MS)
    assert [r.release_id for r in done.published] == [release_for(a, EXPIRED).release_id]
    assert (await other.round(ControlSnapshot(), NOW + 3 * LEASE_MS)).published == []


async def test_commands_older_than_the_retention_are_left_alone() -> None:
    book = MemoryFreezeBook()
    old = steering(release_command(f"fz_{9:032x}", "c1", NOW - retention_ms(SETTINGS) - 1))
    assert await Worker(book).round(old, NOW) == Round()


async def test_a_released_freeze_is_not_issued_again_by_its_incident(tmp_path: Path) -> None:
    settings = Settings(rules_file=write_test_rules(tmp_path))
    book = MemoryFreezeBook()
    pipeline = Pipeline(settings, MemoryStore(), load_rulebook(settings), book)
    values = [
        orjson.dumps(
            {
                "event_id": f"r{i}", "occurred_at": at(i), "redemption_id": f"rd{i}",
                "voucher_id": "v", "user_id": f"acct-{i}", "merchant_id": "m",
                "face_value_minor": 1000, "subsidy_minor": 500, "currency": "EUR",
                "device_id": "farm-tablet",
            }
        )
        for i in range(4)
    ]  # fmt: skip
    batch = records(values, topic="voucher-redemptions")
    first = await process(pipeline, Topic.VOUCHER_REDEMPTIONS, batch, NOW)
    (frozen,) = on(first.outputs, settings.topics.benefit_freezes)
    assert list(book.info) == [frozen["freeze_id"]]
    await book.claim([(frozen["freeze_id"], command("c1"))], NOW, LEASE_MS)
    # The trigger redelivered (its commit was lost): alerts again, no freeze.
    again = await process(pipeline, Topic.VOUCHER_REDEMPTIONS, batch, NOW + 5)
    assert on(again.outputs, settings.topics.alerts) == on(first.outputs, settings.topics.alerts)
    assert on(again.outputs, settings.topics.benefit_freezes) == []
    assert again.suppressed == {Suppression.RELEASED: 1} and again.freezes == []
    # More events of the same incident: nothing at all.
    more = records([values[0]], first_offset=50, topic="voucher-redemptions")
    assert (await process(pipeline, Topic.VOUCHER_REDEMPTIONS, more, NOW + 9)).outputs == []


async def test_the_worker_timer_waits_until_the_worker_may_decide() -> None:
    book = MemoryFreezeBook()
    await book.register([freeze(1, expires_at_ms=1_000)])  # long past, by the wall clock it reads
    sent: list[tuple[bytes, bytes]] = []

    class Channel:
        async def send(self, key: bytes, value: bytes, force: bool) -> Any:
            sent.append((key, value))
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)  # Kafka's acknowledgement
            return done

    ready = False
    metrics = Metrics()
    desk = ReleaseDesk(
        SETTINGS, book, acked_publisher({SETTINGS.topics.benefit_freezes: Channel()})
    )
    timer = ReleaseTimer(desk, lambda: ready, ControlSnapshot, metrics)
    await timer.tick()
    assert sent == []
    ready = True
    await timer.tick()
    assert [k for k, _ in sent] == [b"u:1"]
    assert metrics.releases.labels("benefit_freeze", "expired")._value.get() == 1
