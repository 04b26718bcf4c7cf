"""The Redis store against a real redis-server: aggregates equal a brute-force
recomputation whatever the arrival order (duplicates mixed in), idempotency,
incident claims, script reloading and outage reporting."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.decisions import ALERT_ID_PLACEHOLDER, incident_epoch
from detectors.engine import AggregateRequest
from detectors.errors import StoreUnavailable
from detectors.events import Topic
from detectors.rules_entities import EntityType
from detectors.windows import busiest_window_containing
from stream.store import keys
from stream.store.base import EventRequests, EventStatus, IncidentClaim, IncidentStatus
from stream.store.redis_store import RedisStore, StoreConfig
from tests.incident_ids import incident_alert_id
from tests.integration.services import TEST_KEY_HASH_SECRET, Services, free_port

BUCKET = 1_000
N = 10  # buckets per window
T0 = 1_800_000_000_000
SUM = AggregateSpec(
    AggregateKind.SUM,
    frozenset({Topic.ORDERS}),
    (EntityType.USER,),
    "amount_minor",
    N * BUCKET,
    BUCKET,
)
DST = AggregateSpec(
    AggregateKind.DISTINCT,
    frozenset({Topic.ORDERS}),
    (EntityType.USER,),
    "device_id",
    N * BUCKET,
    BUCKET,
)
FIRST = AggregateSpec(AggregateKind.FIRST_SEEN, frozenset(Topic), (EntityType.USER,))
CONFIG = StoreConfig(dedup_horizon_ms=3_600_000, lateness_ms=60 * BUCKET)
HASHER = keys.KeyHasher(TEST_KEY_HASH_SECRET.encode())
U = HASHER.tag((EntityType.USER,), ("u",))  # the hash tag of user "u"


def new_store(services: Services, config: StoreConfig = CONFIG) -> RedisStore:
    return RedisStore.from_url(
        services.redis_url, f"t{uuid.uuid4().hex[:10]}", 2.0, config, hasher=HASHER
    )


@pytest.fixture
async def store(services: Services) -> AsyncIterator[RedisStore]:
    s = new_store(services)
    await s.start()
    yield s
    await s.drop_namespace()
    await s.close()


def ev(
    event_id: str,
    ms: int,
    amount: int = 1,
    device: str = "d",
    user: str = "u",
    currency: str = "EUR",
) -> EventRequests:
    ids = (user,)
    return EventRequests.of(
        event_id,
        ms,
        [
            AggregateRequest(SUM, ids, amount),
            AggregateRequest(DST, ids, device),
            AggregateRequest(FIRST, ids, 1),
        ],
        currency,
    )


events_strategy = st.lists(
    st.tuples(st.integers(0, 40_000), st.integers(1, 9), st.sampled_from("abcde")),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(events_strategy, st.randoms(use_true_random=False), st.integers(0, 8))
def test_aggregates_equal_brute_force_for_any_order_with_duplicates(
    services: Services, raw: list[tuple[int, int, str]], rnd: object, dups: int
) -> None:
    events = [(f"e{i}", T0 + ms, amount, dev) for i, (ms, amount, dev) in enumerate(raw)]
    arrivals = list(events)
    rnd.shuffle(arrivals)  # type: ignore[attr-defined]
    arrivals += [arrivals[i % len(arrivals)] for i in range(dups)]  # redelivered/duplicated
    asyncio.run(_check_against_reference(services, arrivals))


async def _check_against_reference(services: Services, arrivals: list) -> None:  # type: ignore[type-arg]
    store = new_store(services)
    await store.start()
    try:
        await check_against_reference(store, arrivals)
    finally:
        await store.drop_namespace()
        await store.close()


async def check_against_reference(store: RedisStore, arrivals: list) -> None:  # type: ignore[type-arg]
    """Apply events one by one; after each, every aggregate equals a brute-force
    recomputation over the distinct events applied so far."""
    applied: dict[str, tuple[int, int, str]] = {}
    for event_id, ms, amount, dev in arrivals:
        (obs,) = await store.apply([ev(event_id, ms, amount, dev)])
        duplicate = event_id in applied
        assert obs.status is (EventStatus.DUPLICATE if duplicate else EventStatus.NEW)
        applied[event_id] = (ms, amount, dev)
        s, d, f = (obs.values[spec.agg_id] for spec in (SUM, DST, FIRST))
        buckets: dict[int, int] = {}
        for t, a, _ in applied.values():
            buckets[t // BUCKET] = buckets.get(t // BUCKET, 0) + a
        newest = max(buckets)
        b = ms // BUCKET
        if b == newest:
            expected = sum(v for i, v in buckets.items() if newest - N < i <= newest)
            assert (s.value, s.window_end_ms) == (expected, (newest + 1) * BUCKET)
        else:
            value, end = busiest_window_containing(buckets, b, N, newest)
            assert (s.value, s.window_end_ms) == (value, (end + 1) * BUCKET)
        last_seen: dict[str, int] = {}
        for t, _, dv in applied.values():
            last_seen[dv] = max(last_seen.get(dv, 0), t)
        newest_ms = max(last_seen.values())
        assert d.value == sum(1 for t in last_seen.values() if newest_ms - N * BUCKET < t)
        assert f.value == min(t for t, _, _ in applied.values())


async def test_events_beyond_lateness_are_not_counted(store: RedisStore) -> None:
    await store.apply([ev("new", T0 + 100 * BUCKET)])
    (late,) = await store.apply([ev("old", T0)])  # 100 buckets back; lateness is 60 + window 10
    assert late.values[SUM.agg_id].value is None
    (again,) = await store.apply([ev("new2", T0 + 100 * BUCKET)])
    assert again.values[SUM.agg_id].value == 2


async def test_state_follows_event_time_not_wall_clock(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    old = 1_000_000_000_000  # 2001: far older than any TTL counted from now
    await store.apply([ev("a", old), ev("b", old + BUCKET)])
    (obs,) = await store.apply([ev("c", old + 2 * BUCKET)])
    assert obs.values[SUM.agg_id].value == 3
    found = [k async for k in redis_client.scan_iter(match=f"{store.namespace}:*")]
    # Every state key expires (only the tiny epoch sentinel is kept for good).
    state = [k for k in found if k != keys.epoch(store.namespace).encode()]
    ttls = [await redis_client.pttl(k) for k in state]
    assert len(state) == len(found) - 1 and all(t > 0 for t in ttls)


async def test_window_rolls_forward_and_old_buckets_are_dropped(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    for i in range(300):
        await store.apply([ev(f"e{i}", T0 + i * BUCKET)])
    key = keys.aggregate(store.namespace, U, SUM.agg_id, "EUR")
    fields = await redis_client.hlen(key)
    assert 0 < fields <= N + 60 + 2  # window + lateness buckets + n + t


async def test_one_call_per_batch_on_standalone(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    before = (await redis_client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    batch = [ev(f"b{i}", T0 + i, user=f"user{i % 7}") for i in range(200)]
    await store.apply(batch)
    after = (await redis_client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert after - before == 1


def claim(
    start: int, end: int, trigger: str = "e1", pos: str = "orders/0/1", base: str = "b" * 32
) -> IncidentClaim:
    payload = b'{"alert_id":"%s"}' % ALERT_ID_PLACEHOLDER.encode()
    return IncidentClaim(
        (EntityType.USER,),
        ("u-1",),
        "r1",
        base,
        start,
        end,
        3_600_000,
        trigger,
        pos,
        payload,
        48 * 3_600_000,
        24 * 3_600_000,
        incident_epoch(end),
    )


async def test_incident_claims_new_open_reemit_and_older_bursts(store: RedisStore) -> None:
    t0 = T0
    epoch = incident_epoch(t0 + 600_000)
    (first,) = await store.claim_incidents([claim(t0, t0 + 600_000)])
    assert first.status is IncidentStatus.NEW
    assert first.alert_id == incident_alert_id("b" * 32, epoch, 1)
    assert first.payload == b'{"alert_id":"%s"}' % first.alert_id.encode()
    (second,) = await store.claim_incidents(
        [claim(t0 + 60_000, t0 + 660_000, trigger="e2", pos="orders/0/2")]
    )
    assert (second.status, second.alert_id) == (IncidentStatus.OPEN, first.alert_id)
    (redo,) = await store.claim_incidents([claim(t0, t0 + 600_000)])
    assert redo.status is IncidentStatus.REEMIT and redo.payload == first.payload
    (dup,) = await store.claim_incidents([claim(t0, t0 + 600_000, pos="orders/3/9")])
    assert dup.status is IncidentStatus.OPEN
    # An older, separate burst arriving late is its own (second) incident.
    older = t0 - 10 * 3_600_000
    (past,) = await store.claim_incidents([claim(older, older + 600_000, trigger="e0")])
    assert past.status is IncidentStatus.NEW
    assert past.alert_id == incident_alert_id("b" * 32, incident_epoch(older + 600_000), 2)
    later = t0 + 660_000 + 3_600_000 + 1
    (fresh,) = await store.claim_incidents([claim(later, later + 600_000, trigger="e9")])
    assert fresh.status is IncidentStatus.NEW and fresh.alert_id not in {
        first.alert_id,
        past.alert_id,
    }


async def test_scripts_are_reloaded_after_a_flush(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    await redis_client.script_flush()
    (obs,) = await store.apply([ev("x", T0)])
    assert obs.status is EventStatus.NEW


async def test_unreachable_redis_raises_store_unavailable() -> None:
    dead = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", "t", 0.5, hasher=HASHER)
    with pytest.raises(StoreUnavailable):
        await dead.start()
    with pytest.raises(StoreUnavailable):
        await dead.apply([ev("x", 1)])
    assert await dead.ping() is False
    await dead.close()


async def test_a_long_incident_is_not_forgotten_while_it_goes_on(store: RedisStore) -> None:
    """A 7-day window with a 1 h cooldown and a 24 h retention: crossings two
    days apart still belong to the one incident."""
    week = 7 * 86_400_000

    def long_claim(start: int, trigger: str) -> IncidentClaim:
        return dataclasses.replace(
            claim(start, start + week, trigger=trigger), retention_ms=86_400_000
        )

    (first,) = await store.claim_incidents([long_claim(T0, "a")])
    (later,) = await store.claim_incidents([long_claim(T0 + 2 * 86_400_000, "b")])
    (again,) = await store.claim_incidents([long_claim(T0 + 2 * 86_400_000 + 60_000, "c")])
    assert first.status is IncidentStatus.NEW
    assert (later.status, again.status) == (IncidentStatus.OPEN, IncidentStatus.OPEN)
    assert later.alert_id == again.alert_id == first.alert_id


async def test_first_seen_cannot_be_backdated_beyond_the_lateness(store: RedisStore) -> None:
    (obs,) = await store.apply([ev("now", T0)])
    assert obs.values[FIRST.agg_id].value == T0
    (obs,) = await store.apply([ev("forged", T0 - 10 * 60 * BUCKET)])  # 10 min: > lateness
    assert obs.values[FIRST.agg_id].value == T0
    (obs,) = await store.apply([ev("late", T0 - 30 * BUCKET)])  # 30 s: within lateness
    assert obs.values[FIRST.agg_id].value == T0 - 30 * BUCKET


async def test_a_reader_sees_the_window_ending_at_its_own_time(store: RedisStore) -> None:
    """A ratio's denominator is read where the numerator's window ends, not at
    the busiest window around it."""
    await store.apply([ev(f"e{i}", T0 + i * BUCKET) for i in range(30)])
    read = EventRequests.of("probe", T0 + 14 * BUCKET, [AggregateRequest(SUM, ("u",), None)], "EUR")
    (obs,) = await store.apply([read])
    assert obs.values[SUM.agg_id].value == N  # buckets 5..14, one event each
    assert obs.values[SUM.agg_id].window_end_ms == T0 + 15 * BUCKET


async def test_reads_of_every_kind_change_nothing_and_a_mixed_duplicate_adds_nothing(
    store: RedisStore,
) -> None:
    """A read (None: JSON null in the script call) of a distinct or first-seen
    aggregate only reads; a redelivered event that feeds some aggregates and
    reads others adds to none of them."""
    await store.apply([ev("a", T0, amount=5, device="d1"), ev("b", T0 + BUCKET, 7, "d2")])
    reads = EventRequests.of(
        "probe",
        T0 + 2 * BUCKET,
        [
            AggregateRequest(SUM, ("u",), None),
            AggregateRequest(DST, ("u",), None),
            AggregateRequest(FIRST, ("u",), None),
        ],
        "EUR",
    )
    for _ in range(2):
        (obs,) = await store.apply([reads])
        assert obs.status is EventStatus.NEW
        assert obs.values[SUM.agg_id].value == 12
        assert obs.values[DST.agg_id].value == 2
        assert obs.values[FIRST.agg_id].value == T0
    mixed = EventRequests.of(
        "c",
        T0 + 2 * BUCKET,
        [
            AggregateRequest(SUM, ("u",), 4),
            AggregateRequest(DST, ("u",), "d3"),
            AggregateRequest(FIRST, ("u",), None),
        ],
        "EUR",
    )
    (first,) = await store.apply([mixed])
    (again,) = await store.apply([mixed])
    assert first.status is EventStatus.NEW and again.status is EventStatus.DUPLICATE
    assert first.values[SUM.agg_id].value == again.values[SUM.agg_id].value == 16
    assert first.values[DST.agg_id].value == again.values[DST.agg_id].value == 3
    (obs,) = await store.apply([reads])
    assert obs.values[SUM.agg_id].value == 16 and obs.values[DST.agg_id].value == 3


async def test_out_of_memory_is_an_outage_not_a_bad_record(tmp_path: object) -> None:
    import subprocess

    from devenv import services as devservices

    port = free_port()
    proc = subprocess.Popen(
        [
            devservices.ensure_redis_server(),
            "--port",
            str(port),
            "--save",
            "",
            "--maxmemory",
            "1mb",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not devservices.port_open("127.0.0.1", port):
            await asyncio.sleep(0.05)
        full = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", "oom", 2.0, hasher=HASHER)
        await full.start()
        with pytest.raises(StoreUnavailable, match="OutOfMemoryError"):
            for i in range(5000):
                await full.apply([ev(f"e{i}" * 20, T0 + i, user=f"user-{i}")])
        await full.close()
    finally:
        proc.terminate()
        proc.wait(10)


async def test_a_retained_first_sighting_lives_in_its_own_key_with_that_ttl(
    store: RedisStore,
) -> None:
    """`requires: {age_of: order, ..., retain: 35d}`: one key per order must not
    live the default 400 days, and must not shorten a longer-lived key."""
    day = 86_400_000
    order_age = AggregateSpec(
        AggregateKind.FIRST_SEEN, frozenset(Topic), (EntityType.ORDER,), window_ms=35 * day
    )
    user_age = AggregateSpec(AggregateKind.FIRST_SEEN, frozenset(Topic), (EntityType.ORDER,))
    requests = [AggregateRequest(order_age, ("o-1",), 1), AggregateRequest(user_age, ("o-1",), 1)]
    (obs,) = await store.apply([EventRequests.of("e-1", T0, requests)])
    assert [obs.values[a.agg_id].value for a in (order_age, user_age)] == [T0, T0]
    tag = HASHER.tag((EntityType.ORDER,), ("o-1",))
    short = keys.entity_prefix(store.namespace, tag) + keys.first_seen_suffix(35 * day)
    long = keys.first_seen(store.namespace, tag)
    assert short != long
    short_ttl, long_ttl = await store.client.pttl(short), await store.client.pttl(long)
    assert 35 * day < short_ttl < 36 * day
    assert long_ttl > 300 * day


DAY = 86_400_000
COUNT_30D = AggregateSpec(
    AggregateKind.COUNT, frozenset({Topic.ORDERS}), (EntityType.USER,), None, 30 * DAY, 3_600_000
)


async def test_a_longer_window_added_by_a_rule_change_gets_its_ttl_at_once(
    services: Services, redis_client: aioredis.Redis
) -> None:
    """When a new rule brings a 30-day window, the next write gives it a TTL
    that suits 30 days, and the short window keeps its own."""
    short = new_store(services)
    await short.start()
    try:
        await short.apply([EventRequests.of("e1", T0, [AggregateRequest(SUM, ("u",), 5)], "EUR")])
        key = keys.aggregate(short.namespace, U, SUM.agg_id, "EUR")
        before = await redis_client.pttl(key)
        assert 0 < before < DAY
        longer = RedisStore.from_url(
            services.redis_url, short.namespace, 2.0, CONFIG, hasher=HASHER
        )
        await longer.start()
        try:
            later = T0 + before  # past the short TTL's own refresh point, in event time
            reqs = [AggregateRequest(SUM, ("u",), 5), AggregateRequest(COUNT_30D, ("u",), 1)]
            await longer.apply([EventRequests.of("e2", later, reqs, "EUR")])
            long_key = keys.aggregate(short.namespace, U, COUNT_30D.agg_id)
            assert await redis_client.pttl(long_key) > 30 * DAY
            assert 0 < await redis_client.pttl(key) < DAY
        finally:
            await longer.close()
    finally:
        await short.drop_namespace()
        await short.close()


async def test_the_guard_lives_for_the_dedup_horizon_not_the_longest_window(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    """An idle entity's guard (one entry per event) is reclaimed after the
    duplicate horizon, even when its windows are kept for 30 days."""
    await store.apply([EventRequests.of("e1", T0, [AggregateRequest(COUNT_30D, ("u",), 1)])])
    guard = keys.guard(store.namespace, U)
    state = keys.aggregate(store.namespace, U, COUNT_30D.agg_id)
    limit = CONFIG.dedup_horizon_ms + CONFIG.ttl_slack_ms
    assert 0 < await redis_client.pttl(guard) <= limit
    assert await redis_client.pttl(state) > 30 * DAY


async def test_sums_in_two_currencies_never_meet(store: RedisStore) -> None:
    """One user, one sum, EUR and JPY amounts interleaved: each currency's
    window holds its own amounts only; counts and distinct values are shared."""
    batch = [
        ev(f"e{i}", T0 + i * 10, 100 if i % 2 else 7, currency="JPY" if i % 2 else "EUR")
        for i in range(6)
    ]
    observed = await store.apply(batch)
    assert [o.values[SUM.agg_id].value for o in observed] == [7, 100, 14, 200, 21, 300]
    (eur,) = await store.apply([ev("probe-eur", T0 + 100, 0, currency="EUR")])
    (jpy,) = await store.apply([ev("probe-jpy", T0 + 100, 0, currency="JPY")])
    assert (eur.values[SUM.agg_id].value, jpy.values[SUM.agg_id].value) == (21, 300)
    assert eur.values[DST.agg_id].value == jpy.values[DST.agg_id].value == 1
