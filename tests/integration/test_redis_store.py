"""The Redis store against a real redis-server: idempotent appends, event-time
trimming, incident claims, script reloading and outage reporting."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from detectors.errors import StoreUnavailable
from detectors.rules import EntityType
from stream.store import keys
from stream.store.base import AppendStatus, IncidentClaim, IncidentStatus, LogAppend
from stream.store.redis_store import RedisStore
from tests.integration.services import Services, free_port

HOUR = 3_600_000


@pytest.fixture
async def store(services: Services) -> RedisStore:
    s = RedisStore.from_url(services.redis_url, f"t{uuid.uuid4().hex[:8]}", 2.0)
    await s.start()
    yield s  # type: ignore[misc]
    await s.drop_namespace()
    await s.close()


def append(
    event_id: str, ms: int, user: str = "u-1", span: int = 600_000, retention: int = 24 * HOUR
) -> LogAppend:
    return LogAppend(EntityType.USER, user, "orders", event_id, ms, span, retention)


async def test_append_is_idempotent_and_reads_around_the_event(store: RedisStore) -> None:
    t0 = 1_800_000_000_000
    first = await store.append_and_read([append("a", t0), append("b", t0 + 1000)])
    assert [o.status for o in first] == [AppendStatus.NEW, AppendStatus.NEW]
    assert first[1].entries == [("a", t0), ("b", t0 + 1000)]
    again = await store.append_and_read([append("a", t0), append("b", t0 + 1000)])
    assert [o.status for o in again] == [AppendStatus.DUPLICATE, AppendStatus.DUPLICATE]
    assert await store.log_members(EntityType.USER, "u-1", "orders") == ["a", "b"]


async def test_same_event_id_with_another_time_does_not_move(store: RedisStore) -> None:
    t0 = 1_800_000_000_000
    await store.append_and_read([append("a", t0)])
    (obs,) = await store.append_and_read([append("a", t0 + 5000)])
    assert obs.status is AppendStatus.DUPLICATE
    assert obs.entries == [("a", t0)]


async def test_read_range_is_open_window_both_sides(store: RedisStore) -> None:
    t0 = 1_800_000_000_000
    span = 600_000
    evs = [
        append("old", t0 - span),
        append("in1", t0 - span + 1),
        append("mid", t0),
        append("in2", t0 + span - 1),
        append("new", t0 + span),
    ]
    await store.append_and_read(evs)
    (obs,) = await store.append_and_read([append("mid", t0)])
    assert [e for e, _ in obs.entries] == ["in1", "mid", "in2"]


async def test_trim_follows_event_time_not_wall_clock(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    # Events from 2001: far older than any TTL measured from now, still kept.
    t0 = 1_000_000_000_000
    await store.append_and_read([append("a", t0, retention=HOUR)])
    (late,) = await store.append_and_read([append("b", t0 + 2 * HOUR, retention=HOUR)])
    assert late.status is AppendStatus.NEW
    assert await store.log_members(EntityType.USER, "u-1", "orders") == ["b"]  # a trimmed
    key = keys.event_log(store._ns, EntityType.USER, "u-1", "orders")
    ttl = await redis_client.pttl(key)
    assert HOUR < ttl <= HOUR + 600_000


async def test_events_older_than_the_horizon_are_too_late(store: RedisStore) -> None:
    t0 = 1_800_000_000_000
    await store.append_and_read([append("new", t0, retention=HOUR)])
    (obs,) = await store.append_and_read([append("old", t0 - HOUR, retention=HOUR)])
    assert obs.status is AppendStatus.TOO_LATE and obs.entries == []
    assert await store.log_members(EntityType.USER, "u-1", "orders") == ["new"]


async def test_read_cap_reports_truncation(services: Services) -> None:
    capped = RedisStore.from_url(services.redis_url, f"t{uuid.uuid4().hex[:8]}", 2.0, read_cap=20)
    await capped.start()
    t0 = 1_800_000_000_000
    obs = await capped.append_and_read([append(f"e{i:05d}", t0 + i) for i in range(25)])
    assert obs[-1].truncated and len(obs[-1].entries) == 20
    assert not obs[0].truncated
    await capped.drop_namespace()
    await capped.close()


def claim(
    start: int, end: int, trigger: str = "e1", pos: str = "orders/0/1", alert_id: str = "al_1"
) -> IncidentClaim:
    return IncidentClaim(
        EntityType.USER,
        "u-1",
        "r1",
        alert_id,
        start,
        end,
        3_600_000,
        trigger,
        pos,
        b'{"alert_id":"al_1"}',
        48 * HOUR,
    )


async def test_incident_claims_new_open_reemit(store: RedisStore) -> None:
    t0 = 1_800_000_000_000
    (first,) = await store.claim_incidents([claim(t0, t0 + 600_000)])
    assert first.status is IncidentStatus.NEW and first.alert_id == "al_1"
    # Another crossing inside the incident (even with another id): same incident.
    (second,) = await store.claim_incidents(
        [claim(t0 + 60_000, t0 + 660_000, trigger="e2", pos="orders/0/2", alert_id="al_2")]
    )
    assert second.status is IncidentStatus.OPEN and second.alert_id == "al_1"
    # The trigger redelivered at the same position: republish the stored alert.
    (redo,) = await store.claim_incidents([claim(t0, t0 + 600_000)])
    assert redo.status is IncidentStatus.REEMIT and redo.payload == b'{"alert_id":"al_1"}'
    # Same event id at a new position (upstream duplicate): nothing to publish.
    (dup,) = await store.claim_incidents([claim(t0, t0 + 600_000, pos="orders/3/9")])
    assert dup.status is IncidentStatus.OPEN
    # After the cooldown (past the extended end), a new incident.
    later = t0 + 660_000 + 3_600_000 + 1
    (fresh,) = await store.claim_incidents(
        [claim(later, later + 600_000, trigger="e9", alert_id="al_9")]
    )
    assert fresh.status is IncidentStatus.NEW and fresh.alert_id == "al_9"


async def test_scripts_are_reloaded_after_a_flush(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    await redis_client.script_flush()
    (obs,) = await store.append_and_read([append("x", 1_800_000_000_000)])
    assert obs.status is AppendStatus.NEW


async def test_unreachable_redis_raises_store_unavailable() -> None:
    dead = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "t", 0.5)
    with pytest.raises(StoreUnavailable):
        await dead.start()
    with pytest.raises(StoreUnavailable):
        await dead.append_and_read([append("x", 1)])
    assert await dead.ping() is False
    await dead.close()
