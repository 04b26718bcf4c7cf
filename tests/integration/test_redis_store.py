"""The Redis store against a real redis-server: the semantics shared with the
in-memory store (tests/store_cases/store.py), and what only Redis has: key
TTLs, one script call per batch, script reloading and outage reporting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.engine import AggregateRequest
from detectors.errors import StoreUnavailable
from detectors.events import Topic
from detectors.rules_entities import EntityType
from stream.errors import StoreLayoutMismatch
from stream.store import keys
from stream.store.base import EventStatus, StoreConfig
from stream.store.redis_store import RedisStore
from stream.store.slot_tags import slot_tag
from tests.integration.services import TEST_KEY_HASH_SECRET, Services, free_port
from tests.store_cases.requests import event_requests
from tests.store_cases.store import BUCKET, CONFIG, DST, SUM, T0, N, StoreCases, ev

HASHER = keys.KeyHasher(TEST_KEY_HASH_SECRET.encode())
U = HASHER.tag((EntityType.USER,), ("u",))  # the hash tag of user "u"


class TestStore(StoreCases):
    """The backends' shared semantics, on Redis."""


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


async def test_state_follows_event_time_not_wall_clock(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    old = 1_000_000_000_000  # 2001: far older than any TTL counted from now
    await store.apply([ev("a", old), ev("b", old + BUCKET)])
    (obs,) = await store.apply([ev("c", old + 2 * BUCKET)])
    assert obs.values[SUM.agg_id].value == 3
    found = [k async for k in redis_client.scan_iter(match=f"{store.namespace}:*")]
    # Every state key expires (only the two tiny sentinels are kept for good:
    # the epoch and the key layout).
    sentinels = {keys.epoch(store.namespace).encode(), keys.key_layout(store.namespace).encode()}
    state = [k for k in found if k not in sentinels]
    ttls = [await redis_client.pttl(k) for k in state]
    assert len(state) == len(found) - 2 and all(t > 0 for t in ttls)


async def test_window_rolls_forward_and_old_buckets_are_dropped(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    for i in range(300):
        await store.apply([ev(f"e{i}", T0 + i * BUCKET)])
    key = keys.aggregate(store.namespace, U, SUM.agg_id, "EUR")
    fields = await redis_client.hlen(key)
    # window + lateness buckets + n + t, and the counted events' ring + p
    assert 0 < fields <= N + 60 + 2 + CONFIG.counted_events + 1


async def test_one_call_per_batch_on_standalone(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    before = (await redis_client.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    batch = [ev(f"b{i}", T0 + i, user=f"user{i % 7}") for i in range(200)]
    await store.apply(batch)
    after = (await redis_client.info("commandstats"))["cmdstat_evalsha"]["calls"]
    assert after - before == 1


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
            "2mb",  # room for the scripts and the sentinels a start writes
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
            for i in range(50_000):  # the first refused write ends it
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
    (obs,) = await store.apply([event_requests("e-1", T0, requests)])
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
        await short.apply([event_requests("e1", T0, [AggregateRequest(SUM, ("u",), 5)], "EUR")])
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
            await longer.apply([event_requests("e2", later, reqs, "EUR")])
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
    """The guard (one entry per event) is reclaimed after the duplicate
    horizon once nothing is applied, even when windows are kept for 30 days."""
    await store.apply([event_requests("e1", T0, [AggregateRequest(COUNT_30D, ("u",), 1)])])
    guard = keys.event_guard(store.namespace, slot_tag(0))
    state = keys.aggregate(store.namespace, U, COUNT_30D.agg_id)
    limit = CONFIG.dedup_horizon_ms + CONFIG.ttl_slack_ms
    assert 0 < await redis_client.pttl(guard) <= limit
    assert await redis_client.pttl(state) > 30 * DAY


async def test_ttls_are_refreshed_when_event_time_enters_a_new_half_of_the_slack(
    store: RedisStore, redis_client: aioredis.Redis
) -> None:
    """A key's TTL is set when it is made, then refreshed only when its newest
    event time enters a new slice of half the TTL slack: the slack absorbs
    the delay, and a busy key costs one PEXPIRE per slice, not per event."""
    slice_ms = CONFIG.ttl_slack_ms // 2
    start = (T0 // slice_ms + 1) * slice_ms  # the first ms of a slice
    names = [
        keys.aggregate(store.namespace, U, SUM.agg_id, "EUR"),
        keys.aggregate(store.namespace, U, DST.agg_id),
        keys.first_seen(store.namespace, U),
    ]

    async def ttls_after(event_id: str, ms: int) -> list[int]:
        await store.apply([ev(event_id, ms)])
        return [await redis_client.pttl(n) for n in names]

    assert min(await ttls_after("e1", start)) > 1_000
    for name in names:
        await redis_client.pexpire(name, 1_000_000)
    # Within the slice, the sum's window moves (5 buckets on) and nothing is refreshed.
    assert max(await ttls_after("e2", start + 5 * BUCKET)) <= 1_000_000
    assert min(await ttls_after("e3", start + slice_ms)) > 1_000_000


async def test_overlapping_applies_are_applied_in_the_order_made(store: RedisStore) -> None:
    """The backtest starts a batch's apply before the previous one returned
    (stream.overlap): each call must still see every earlier one."""
    calls = [asyncio.create_task(store.apply([ev(f"o{i}", T0 + i)])) for i in range(40)]
    sums = [obs.values[SUM.agg_id].value for (obs,) in await asyncio.gather(*calls)]
    assert sums == list(range(1, 41))


async def test_a_call_after_an_event_waits_for_it_and_lets_others_pass(
    store: RedisStore,
) -> None:
    """The live worker's pipelined batches (stream.pipelined): a call made with
    `after` takes its turn only once that event is set, so the redo of the
    batch before it, made later, is applied first."""
    gate = asyncio.Event()
    waiting = asyncio.create_task(store.apply([ev("second", T0 + 1)], after=gate))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    (first,) = await store.apply([ev("first", T0)])
    gate.set()
    (second,) = await waiting
    assert first.values[SUM.agg_id].value == 1
    assert second.values[SUM.agg_id].value == 2


async def test_state_keyed_under_another_secret_is_refused(services: Services) -> None:
    """Another secret (or key layout) would miss every key and start all
    windows from zero while orphaning the old state: the store refuses."""
    ns = f"layout-{uuid.uuid4().hex[:8]}"
    other = keys.KeyHasher(b"another-secret-of-at-least-32-bytes!!")
    stores = [
        RedisStore.from_url(services.redis_url, ns, 2.0, hasher=hasher)
        for hasher in (HASHER, other, HASHER)
    ]
    try:
        await stores[0].start()
        with pytest.raises(StoreLayoutMismatch) as refused:
            await stores[1].start()
        assert "FRAUD_KEY_HASH_SECRET" in str(refused.value)
        assert refused.value.found == f"{keys.KEY_LAYOUT}:{HASHER.fingerprint()}"
        await stores[2].start()  # the secret it was written with
    finally:
        await stores[0].drop_namespace()
        for store in stores:
            await store.close()
