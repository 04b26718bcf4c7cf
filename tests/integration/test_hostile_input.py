"""Hostile input: 10,000 malformed payloads of many kinds mixed with valid
events. Every invalid one reaches fraud-dlq with a reason, every valid one is
processed, and the worker neither crashes nor stalls."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from stream import kafka_io
from tests.integration.applied_events import applied
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    order_json,
    wait_caught_up,
    wait_ready,
    write_test_rules,
)

VALID = {
    "event_id": "x",
    "occurred_at": "2026-11-02T12:00:00Z",
    "order_id": "o",
    "user_id": "u",
    "merchant_id": "m",
    "amount_minor": 100,
    "currency": "EUR",
}


def malformed(rng: random.Random) -> tuple[str, Callable[[int], bytes]]:
    """(expected DLQ reason, factory) for one of many kinds of bad payload."""
    kinds: list[tuple[str, Callable[[int], bytes]]] = [
        ("invalid_utf8", lambda i: b'{"event_id": "\xff\xfe' + str(i).encode() + b'"}'),
        ("invalid_json", lambda i: b'{"event_id": ' + str(i).encode()),
        ("invalid_json", lambda i: b"[" * 5000 + b"]" * 5000),  # nesting beyond orjson's limit
        ("invalid_json", lambda i: b'{"amount_minor": 1e400}'),
        (
            "out_of_range",  # orjson reads integers beyond 64 bits as floats: 1e40
            lambda i: orjson.dumps({**VALID})[:-1] + b', "amount_minor": ' + b"9" * 40 + b"}",
        ),
        ("not_an_object", lambda i: orjson.dumps([VALID])),
        ("not_an_object", lambda i: b"null"),
        ("wrong_type", lambda i: orjson.dumps({**VALID, "amount_minor": str(i)})),
        ("wrong_type", lambda i: orjson.dumps({**VALID, "user_id": {"$ne": None}})),
        ("wrong_type", lambda i: orjson.dumps({**VALID, "amount_minor": True})),
        ("out_of_range", lambda i: orjson.dumps({**VALID, "amount_minor": -i - 1})),
        ("out_of_range", lambda i: orjson.dumps({**VALID, "user_id": "u" * 5000})),
        ("missing_field", lambda i: orjson.dumps({"event_id": f"e{i}", "foo": "bar"})),
        ("bad_time", lambda i: orjson.dumps({**VALID, "occurred_at": "yesterday"})),
        ("bad_format", lambda i: orjson.dumps({**VALID, "currency": "€"})),
        ("empty_value", lambda i: b""),
    ]
    return rng.choice(kinds)


async def test_ten_thousand_malformed_payloads(services: Services, tmp_path: Path) -> None:
    rng = random.Random(99)
    settings = services.settings(rules_file=write_test_rules(tmp_path), batch_max=500)
    await create_topics(settings)
    expected: Counter[str] = Counter()
    records: list[tuple[bytes | None, bytes | None]] = []
    valid_ids = []
    for i in range(10_000):
        reason, make = malformed(rng)
        value = make(i)
        if reason == "empty_value":
            value = None  # a tombstone
        expected[reason] += 1
        records.append((f"m{i % 97}".encode(), value))
        if i % 10 == 0:
            eid = f"ok-{i}"
            valid_ids.append(eid)
            records.append(
                (b"m-ok", order_json(eid, f"user-{i % 50}", f"2026-11-02T12:{i % 60:02d}:00Z"))
            )
    for _ in range(20):  # a few giant values, over the size limit
        expected["oversize"] += 1
        records.append((b"big", b'{"pad": "' + b"x" * 600_000 + b'"}'))
    rng.shuffle(records)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    started = time.monotonic()
    try:
        wait_ready(worker)
        await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, records)
        await wait_caught_up(worker, [settings.topics.orders], timeout_s=240)
        elapsed = time.monotonic() - started
        assert worker.alive()
    finally:
        worker.stop()
    dead = [
        orjson.loads(r.value)
        for r in await kafka_io.read_from(
            settings.kafka_bootstrap, settings.topics.dlq, timeout_s=120
        )
    ]
    got = Counter(d["error"]["kind"] for d in dead)
    print(
        f"\n{sum(expected.values())} malformed + {len(valid_ids)} valid in {elapsed:.1f}s; "
        f"DLQ reasons: {dict(got)}"
    )
    assert got == expected
    assert all(d["error"]["message"] for d in dead)
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        assert await applied(client, settings.redis_namespace, valid_ids) == set(valid_ids)
    finally:
        await client.aclose()
