"""Two currencies in one merchant's stream, on either store backend: no sum,
balance or ratio ever adds one currency to another. Each case would decide
the other way if yen and cents were added."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.events import Topic
from stream.codec import Incoming, SourceRecord
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from tests.integration.services import order_json
from tests.store_cases.backends import Stores
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


async def outputs_by_topic(
    pipeline: Pipeline, events: list[tuple[Topic, bytes]]
) -> dict[str, list[Any]]:
    """One batch of `events` through `pipeline`: its outputs, per output topic."""
    items = [
        Incoming.read(
            topic,
            SourceRecord(topic.value, 0, i, b"m-1", value, NOW),
            pipeline.settings.max_event_bytes,
        )
        for i, (topic, value) in enumerate(events)
    ]
    result = await pipeline.process_mixed(items, NOW)
    assert not result.dead_letters
    by_topic: dict[str, list[Any]] = {}
    for o in result.outputs:
        by_topic.setdefault(o.topic, []).append(orjson.loads(o.value))
    return by_topic


async def decide(
    stores: Stores, settings: Settings, events: list[tuple[Topic, bytes]]
) -> dict[str, list[Any]]:
    async with stores.scratch(settings) as store:
        return await outputs_by_topic(Pipeline(settings, store, load_rulebook(settings)), events)


def rules(stores: Stores, tmp_path: Path, text: str = BALANCE_RULES) -> Settings:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return stores.settings(rules_file=path)


class CurrencyCases:
    @pytest.mark.parametrize("currency", ["EUR", "JPY"])
    async def test_a_payout_is_balanced_against_earnings_in_its_own_currency(
        self, stores: Stores, tmp_path: Path, currency: str
    ) -> None:
        """150.00 EUR (or 15,000 JPY) paid out against 100.00 EUR (10,000 JPY)
        earned: overpaid, whatever the other currency says (added, 10,000 +
        10,000 - 15,000 would look fine). 90.00 (9,000) is covered."""
        settings = rules(stores, tmp_path)
        over = [*earnings(), (Topic.PAYOUTS, payout("p", 15_000, currency))]
        out = await decide(stores, settings, over)
        (alert,) = out[settings.topics.alerts]
        assert (alert["currency"], alert["observed"], alert["threshold"]) == (currency, -5000, 0)
        assert alert["evidence"]["credits"] == 10_000
        (freeze,) = out[settings.topics.fund_freezes]
        assert (freeze["amount_minor"], freeze["currency"]) == (15_000, currency)
        covered = [*earnings(), (Topic.PAYOUTS, payout("p", 9_000, currency))]
        fine = await decide(stores, settings, covered)
        assert settings.topics.alerts not in fine

    async def test_the_default_rules_hold_a_payout_on_its_own_currency(
        self, stores: Stores
    ) -> None:
        """The shipped payout rule (EUR: held below -100.00): 250.00 EUR paid
        against 100.00 EUR earned is held; the yen orders change nothing."""
        settings = stores.settings()
        out = await decide(
            stores, settings, [*earnings(), (Topic.PAYOUTS, payout("p", 25_000, "EUR"))]
        )
        assert [(f["rule_id"], f["currency"]) for f in out[settings.topics.fund_freezes]] == [
            ("payout_exceeds_earnings_30d", "EUR")
        ]
