"""Two currencies on Redis: the cases shared with the in-memory store
(tests/store_cases/currencies.py), and that every sum is one key per currency."""

from __future__ import annotations

import redis.asyncio as aioredis

from detectors.events import Topic
from detectors.rules_entities import EntityType
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.store_wiring import open_store
from tests.integration.services import Services
from tests.store_cases.currencies import CurrencyCases, earnings, outputs_by_topic, payout


class TestCurrencies(CurrencyCases):
    pass


async def test_every_sum_is_one_key_per_currency(
    services: Services, redis_client: aioredis.Redis
) -> None:
    settings = services.settings()
    store = open_store(settings)
    await store.start()
    try:
        pipeline = Pipeline(settings, store, load_rulebook(settings))
        await outputs_by_topic(pipeline, [*earnings(), (Topic.PAYOUTS, payout("p", 25_000, "EUR"))])
        names = [k.decode() async for k in redis_client.scan_iter(f"{settings.redis_namespace}:*")]
        tag = store.hasher.tag((EntityType.MERCHANT,), ("m-1",))
        prefix = f"{settings.redis_namespace}:{tag}:a:"
        sums = {n.rsplit(":", 1)[1] for n in names if n.startswith(prefix) and n.count(":") == 5}
        assert sums == {"EUR", "JPY"}
    finally:
        await store.drop_namespace()
        await store.close()
