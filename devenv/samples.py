"""A short, deterministic stream of sample events for the demo (and one
observability test): ordinary customers ordering at a steady pace, one
account placing a burst of orders (a velocity incident), a refund, a voucher
redemption, a payout, and a few malformed records that must land in the
dead-letter topic.

The full labelled traffic simulator is a separate tool; this is just enough
traffic to see every part of the path work.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

from detectors.events import Topic
from detectors.timestamps import format_rfc3339_ms


@dataclass(frozen=True, slots=True)
class SampleRecord:
    topic: Topic
    key: bytes | None
    value: bytes | None


def sample_stream(run_id: str, start_ms: int, seed: int = 7) -> list[SampleRecord]:
    """`run_id` keeps ids unique per run, so a second demo run alerts again
    instead of being (correctly) de-duplicated against the first."""
    rng = random.Random(seed)
    out: list[SampleRecord] = []
    merchants = [f"m-{i:03d}" for i in range(1, 6)]

    def order(n: int, user: str, at_ms: int, merchant: str) -> SampleRecord:
        value = {
            "event_id": f"{run_id}-ord-{n}",
            "occurred_at": format_rfc3339_ms(at_ms),
            "order_id": f"{run_id}-o{n}",
            "user_id": user,
            "merchant_id": merchant,
            "amount_minor": rng.randrange(800, 6000),
            "currency": "EUR",
            "device_id": f"dev-{user}",
        }
        return SampleRecord(Topic.ORDERS, merchant.encode(), orjson.dumps(value))

    n = 0
    for minute in range(0, 120, 4):  # regular customers: one order every few minutes overall
        user = f"{run_id}-customer-{rng.randrange(1, 25):02d}"
        out.append(order(n, user, start_ms + minute * 60_000, rng.choice(merchants)))
        n += 1
    burst_user = f"{run_id}-burst-account"
    for i in range(12):  # twelve orders in six minutes from one account
        out.append(order(n, burst_user, start_ms + 30 * 60_000 + i * 30_000, merchants[0]))
        n += 1
    out += _other_topics(run_id, start_ms, merchants[0])
    out += [
        SampleRecord(Topic.ORDERS, b"m-001", b'{"event_id": "broken'),
        SampleRecord(Topic.ORDERS, b"m-001", b"\xff\xfe not utf-8"),
        SampleRecord(
            Topic.ORDERS,
            b"m-001",
            orjson.dumps({"event_id": f"{run_id}-neg", "occurred_at": "2026-11-02T12:00:00Z"}),
        ),
    ]
    return out


def _other_topics(run_id: str, start_ms: int, merchant: str) -> list[SampleRecord]:
    at = format_rfc3339_ms(start_ms + 90 * 60_000)
    key = merchant.encode()
    refund = {
        "event_id": f"{run_id}-ref-1",
        "occurred_at": at,
        "refund_id": f"{run_id}-r1",
        "order_id": f"{run_id}-o1",
        "user_id": f"{run_id}-customer-01",
        "merchant_id": merchant,
        "amount_minor": 1200,
        "currency": "EUR",
        "initiated_by": "user",
    }
    redemption = {
        "event_id": f"{run_id}-red-1",
        "occurred_at": at,
        "redemption_id": f"{run_id}-rd1",
        "voucher_id": "v-welcome",
        "user_id": f"{run_id}-customer-02",
        "merchant_id": merchant,
        "face_value_minor": 1000,
        "subsidy_minor": 500,
        "currency": "EUR",
    }
    payout = {
        "event_id": f"{run_id}-pay-1",
        "occurred_at": at,
        "payout_id": f"{run_id}-p1",
        "merchant_id": merchant,
        "amount_minor": 30000,  # less than m-001 earns in the sample: no fund freeze
        "currency": "EUR",
        "destination_fingerprint": "iban-sha256:3f2a",
    }
    return [
        SampleRecord(Topic.REFUNDS, key, orjson.dumps(refund)),
        SampleRecord(Topic.VOUCHER_REDEMPTIONS, key, orjson.dumps(redemption)),
        SampleRecord(Topic.PAYOUTS, key, orjson.dumps(payout)),
    ]
