"""No personal identifier in Redis: after a realistic run, no key name and no
distinct-count member contains a raw id of the input events (they appear
only as keyed hashes, see stream/store/keys.py)."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from stream.simulation import SimulationConfig, simulate
from stream.store.redis_store import RedisStore
from stream.store_wiring import key_hasher
from tests.integration.services import Services

# Every identifier field of the input contract that names a person, a
# payment instrument, a device or an address, and the business ids that are
# hashed the same way (one rule for every entity id is simpler to audit).
PERSONAL = ("user_id", "ip", "payment_fingerprint", "destination_fingerprint", "device_id")
BUSINESS = ("merchant_id", "campaign_id", "voucher_id", "order_id")


async def test_no_raw_identifier_in_any_key_or_distinct_member(
    services: Services, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    sim = simulate(SimulationConfig(seed=3, scale=0.1))
    events = tmp_path / "events.jsonl"
    events.write_bytes(sim.jsonl())
    ids: dict[str, set[str]] = {}
    for _, event in sim.timeline:
        for name in PERSONAL + BUSINESS:
            value = getattr(event, name, None)
            if value is not None:
                ids.setdefault(name, set()).add(str(value))
    assert set(PERSONAL) <= set(ids)  # the traffic does carry every kind
    settings = services.settings()
    summary = await run_backtest(
        settings, load_rulebook(settings), events, tmp_path / "out.jsonl", None, True
    )
    store = RedisStore(redis_client, summary.namespace, hasher=key_hasher(settings))
    try:
        names = [k.decode() async for k in redis_client.scan_iter(f"{summary.namespace}:*", 1000)]
        assert len(names) > 10_000  # the run left its state
        members: list[str] = []
        for name in names:
            if ":a:" in name and await redis_client.type(name) == b"zset":
                members += [m.decode() for m in await redis_client.zrange(name, 0, -1)]
        assert len(members) > 1_000  # distinct counts were kept
        keys_blob, members_blob = "\n".join(names), "\n".join(members)
        leaks = {
            name: [v for v in values if v in keys_blob or v in members_blob][:3]
            for name, values in ids.items()
        }
        assert {k: v for k, v in leaks.items() if v} == {}
    finally:
        await store.drop_namespace()
