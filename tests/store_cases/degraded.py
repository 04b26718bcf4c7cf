"""Decisions judged while an input they read was stalled (stream.alignment),
on either store backend: they may alert, marked `degraded` with the reason,
but never freeze; rules that read only other topics are unaffected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.events import Topic
from stream.codec import Incoming, SourceRecord, decode
from stream.pipeline import BatchResult, Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from tests.store_cases.backends import Stores

NOW = 1_900_000_000_000
RULES = """\
ruleset: degraded-test
ruleset_version: "1"
rules:
  - id: payout_beyond_earnings
    version: 1
    triggers: [payouts]
    entity: merchant
    metric:
      kind: balance
      window: 7d
      credit: {kind: sum, field: amount_minor, topics: [orders]}
      debit: {kind: sum, field: amount_minor, topics: [payouts]}
    compare: "<"
    threshold: {EUR: 0}
    severity: critical
    action: {type: fund_freeze, scope: payout, duration: 3d}
  - id: device_accounts
    version: 1
    triggers: [voucher-redemptions]
    entity: device
    metric: {kind: distinct, field: user_id, topics: [voucher-redemptions], window: 24h}
    compare: ">="
    threshold: 2
    severity: high
    action: {type: benefit_freeze, scope: vouchers, duration: 7d}
"""


def payout(event_id: str, merchant: str, amount: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": "2026-11-02T03:00:00Z",
            "payout_id": f"po-{event_id}",
            "merchant_id": merchant,
            "amount_minor": amount,
            "currency": "EUR",
            "destination_fingerprint": "iban:1",
        }
    )


def redemption(event_id: str, user: str) -> bytes:
    return orjson.dumps(
        {
            "event_id": event_id,
            "occurred_at": "2026-11-02T03:00:00Z",
            "redemption_id": f"r-{event_id}",
            "voucher_id": "welcome",
            "user_id": user,
            "merchant_id": "m-v",
            "face_value_minor": 1000,
            "subsidy_minor": 500,
            "currency": "EUR",
            "device_id": "dev-1",
        }
    )


def payout_item(
    offset: int, payout_id: str, merchant: str, amount: int, stalled: frozenset[Topic] = frozenset()
) -> Incoming:
    """A payout as the merge releases it: judged without the `stalled` topics."""
    record = SourceRecord(
        "payouts", 0, offset, merchant.encode(), payout(payout_id, merchant, amount), NOW
    )
    return Incoming(
        Topic.PAYOUTS, decode(Topic.PAYOUTS, record, Settings().max_event_bytes), stalled
    )


def outputs(settings: Settings, result: BatchResult, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(o.value) for o in result.outputs if o.topic == topic]


class DegradedCases:
    @pytest.fixture
    async def env(self, stores: Stores, tmp_path: Path) -> AsyncIterator[tuple[Settings, Pipeline]]:
        rules = tmp_path / "rules.yaml"
        rules.write_text(RULES)
        settings = stores.settings(rules_file=rules)
        async with stores.scratch(settings) as store:
            yield settings, Pipeline(settings, store, load_rulebook(settings))

    async def test_a_rule_reading_a_stalled_topic_alerts_degraded_and_never_freezes(
        self,
        env: tuple[Settings, Pipeline],
    ) -> None:
        settings, pipeline = env
        # m-1's payout judged without orders read up to its time; m-2's normally.
        items = [
            payout_item(0, "p1", "m-1", 5000, stalled=frozenset({Topic.ORDERS})),
            payout_item(1, "p2", "m-2", 5000),
        ]
        result = await pipeline.process_mixed(items, NOW)
        by_merchant = {a["entity_id"]: a for a in outputs(settings, result, settings.topics.alerts)}
        assert set(by_merchant) == {"m-1", "m-2"}
        degraded = by_merchant["m-1"]["evidence"]
        assert degraded["degraded"] is True and "orders" in degraded["degraded_reason"]
        assert "degraded" not in by_merchant["m-2"]["evidence"]
        freezes = outputs(settings, result, settings.topics.fund_freezes)
        assert [f["merchant_id"] for f in freezes] == ["m-2"]
        assert [r.rule_id for r in result.degraded] == ["payout_beyond_earnings"]

        # The same payout redelivered, still degraded: the same alert id again.
        again = await pipeline.process_mixed(items[:1], NOW)
        (same,) = outputs(settings, again, settings.topics.alerts)
        assert same["alert_id"] == by_merchant["m-1"]["alert_id"]
        # Once orders are read, m-1's next payout decides completely: the degraded
        # alert opened no incident, so this one does, and freezes.
        later = [payout_item(2, "p3", "m-1", 100)]
        complete = await pipeline.process_mixed(later, NOW)
        (alert,) = outputs(settings, complete, settings.topics.alerts)
        assert "degraded" not in alert["evidence"] and alert["alert_id"] != same["alert_id"]
        (freeze,) = outputs(settings, complete, settings.topics.fund_freezes)
        assert freeze["merchant_id"] == "m-1"

    async def test_a_rule_not_reading_the_stalled_topic_decides_as_usual(
        self,
        env: tuple[Settings, Pipeline],
    ) -> None:
        settings, pipeline = env
        stalled = frozenset({Topic.ORDERS, Topic.PAYOUTS})
        items = [
            Incoming(
                Topic.VOUCHER_REDEMPTIONS,
                decode(
                    Topic.VOUCHER_REDEMPTIONS,
                    SourceRecord(
                        "voucher-redemptions", 0, i, b"m-v", redemption(f"r{i}", f"u{i}"), NOW
                    ),
                    Settings().max_event_bytes,
                ),
                stalled,
            )
            for i in range(2)
        ]
        result = await pipeline.process_mixed(items, NOW)
        (alert,) = outputs(settings, result, settings.topics.alerts)
        assert "degraded" not in alert["evidence"] and not result.degraded
        assert len(outputs(settings, result, settings.topics.benefit_freezes)) == 1
