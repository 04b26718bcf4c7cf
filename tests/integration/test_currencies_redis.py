"""Two currencies in one merchant's stream on real Redis: no sum, balance or
ratio ever adds one currency to another. Each case would decide the other
way if yen and cents were added."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from detectors.events import Topic
from detectors.rules_entities import EntityType
from stream.codec import Incoming, SourceRecord
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store_wiring import open_store
from tests.integration.services import Services, order_json
from tests.unit.test_money_rules import BALANCE_RULE

NOW = 1_900_000_000_000
DAY = "2026-11-02"

# The unit tests' balance rule, holding the payout that overdraws it.
BALANCE_RULES = (
    "rules:\n" + BALANCE_RULE + "    action: {type: fund_freeze, scope: payout, duration: 3d}\n"
)


def payout(event_id: str, amount: int, currency: str, hour: int = 20) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": f"{DAY}T{hour}:00:00Z",
            "payout_id": f"po-{event_id}",
            "merchant_id": "m-1",
            "amount_minor": amount,
            "currency": currency,
            "destination_fingerprint": "iban-m-1",
        }
    )


def earnings() -> list[tuple[Topic, bytes]]:
    """EUR orders worth 100.00 and JPY orders worth 10,000 yen, one merchant."""
    eur = [order_json(f"e{i}", f"u{i}", f"{DAY}T1{i}:00:00Z", amount=2500) for i in range(4)]
    jpy = [
        order_json(f"j{i}", f"v{i}", f"{DAY}T1{i}:30:00Z", amount=2500, currency="JPY")
        for i in range(4)
    ]
    return [(Topic.ORDERS, v) for v in eur + jpy]


async def decide(settings: Settings, events: list[tuple[Topic, bytes]]) -> dict[str, Any]:
    store = open_store(settings)
    await store.start()
    try:
        pipeline = Pipeline(settings, store, load_rulebook(settings))
        items = [
            Incoming.read(
                topic,
                SourceRecord(topic.value, 0, i, b"m-1", value, NOW),
                settings.max_event_bytes,
            )
            for i, (topic, value) in enumerate(events)
        ]
        result = await pipeline.process_mixed(items, NOW)
        assert not result.dead_letters
        by_topic: dict[str, list[Any]] = {}
        for o in result.outputs:
            by_topic.setdefault(o.topic, []).append(orjson.loads(o.value))
        return by_topic
    finally:
        await store.drop_namespace()
        await store.close()


def rules(services: Services, tmp_path: Path, text: str = BALANCE_RULES) -> Settings:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return services.settings(rules_file=path)


@pytest.mark.parametrize("currency", ["EUR", "JPY"])
async def test_a_payout_is_balanced_against_earnings_in_its_own_currency(
    services: Services, tmp_path: Path, currency: str
) -> None:
    """150.00 EUR (or 15,000 JPY) paid out against 100.00 EUR (10,000 JPY)
    earned: overpaid, whatever the other currency says (added, 10,000 +
    10,000 - 15,000 would look fine). 90.00 (9,000) is covered."""
    settings = rules(services, tmp_path)
    out = await decide(settings, [*earnings(), (Topic.PAYOUTS, payout("p", 15_000, currency))])
    (alert,) = out[settings.topics.alerts]
    assert (alert["currency"], alert["observed"], alert["threshold"]) == (currency, -5000, 0)
    assert alert["evidence"]["credits"] == 10_000
    (freeze,) = out[settings.topics.fund_freezes]
    assert (freeze["amount_minor"], freeze["currency"]) == (15_000, currency)
    fine = await decide(settings, [*earnings(), (Topic.PAYOUTS, payout("p", 9_000, currency))])
    assert settings.topics.alerts not in fine


async def test_the_default_rules_keep_money_apart_in_redis(
    services: Services, redis_client: aioredis.Redis
) -> None:
    """The shipped payout rule (EUR: held below -100.00): 250.00 EUR paid
    against 100.00 EUR earned is held; the yen orders change nothing, and
    every sum is one key per currency."""
    settings = services.settings()
    store = open_store(settings)
    await store.start()
    try:
        pipeline = Pipeline(settings, store, load_rulebook(settings))
        events = [*earnings(), (Topic.PAYOUTS, payout("p", 25_000, "EUR"))]
        items = [
            Incoming.read(
                topic,
                SourceRecord(topic.value, 0, i, b"m-1", value, NOW),
                settings.max_event_bytes,
            )
            for i, (topic, value) in enumerate(events)
        ]
        result = await pipeline.process_mixed(items, NOW)
        freezes = [
            orjson.loads(o.value) for o in result.outputs if o.topic == settings.topics.fund_freezes
        ]
        assert [(f["rule_id"], f["currency"]) for f in freezes] == [
            ("payout_exceeds_earnings_30d", "EUR")
        ]
        names = [k.decode() async for k in redis_client.scan_iter(f"{settings.redis_namespace}:*")]
        tag = store.hasher.tag((EntityType.MERCHANT,), ("m-1",))
        prefix = f"{settings.redis_namespace}:{tag}:a:"
        sums = {n.rsplit(":", 1)[1] for n in names if n.startswith(prefix) and n.count(":") == 5}
        assert sums == {"EUR", "JPY"}
    finally:
        await store.drop_namespace()
        await store.close()
