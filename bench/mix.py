"""The benchmarks' traffic: many valid events with the shape of a busy
marketplace, cheap to generate, the same for the same seed."""

from __future__ import annotations

import random

import orjson

from detectors.events import Topic
from detectors.timestamps import format_rfc3339_ms
from devenv.samples import SampleRecord


def synthetic_mix(
    n: int, start_ms: int, seed: int = 1, ids: str = "", step_ms: float = 10.0
) -> list[SampleRecord]:
    """`n` valid events for benchmarks: 75% orders, 15% voucher redemptions, 7%
    refunds, 3% payouts over 3,000 users, 2,500 devices and 300 merchants,
    one event every `step_ms` of event time. `ids` prefixes every id: two calls
    with the same seed but different prefixes are different events, not
    redeliveries of the same ones."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = format_rfc3339_ms(start_ms + int(i * step_ms))
        user, merchant = f"u{rng.randrange(3000)}", f"m{rng.randrange(300)}"
        kind = rng.random()
        value: dict[str, object]
        if kind < 0.75:
            topic = Topic.ORDERS
            value = {
                "event_id": f"{ids}e{i}",
                "occurred_at": t,
                "order_id": f"{ids}o{i}",
                "user_id": user,
                "merchant_id": merchant,
                "amount_minor": rng.randrange(500, 9000),
                "currency": "EUR",
                "device_id": f"d{rng.randrange(2500)}",
            }
        elif kind < 0.9:
            topic = Topic.VOUCHER_REDEMPTIONS
            value = {
                "event_id": f"{ids}e{i}",
                "occurred_at": t,
                "redemption_id": f"{ids}r{i}",
                "voucher_id": "v",
                "user_id": user,
                "merchant_id": merchant,
                "face_value_minor": 1000,
                "subsidy_minor": 400,
                "currency": "EUR",
                "device_id": f"d{rng.randrange(2500)}",
            }
        elif kind < 0.97:
            topic = Topic.REFUNDS
            value = {
                "event_id": f"{ids}e{i}",
                "occurred_at": t,
                "refund_id": f"{ids}f{i}",
                "order_id": f"{ids}o{max(i - 5, 0)}",
                "user_id": user,
                "merchant_id": merchant,
                "amount_minor": 700,
                "currency": "EUR",
            }
        else:
            topic = Topic.PAYOUTS
            value = {
                "event_id": f"{ids}e{i}",
                "occurred_at": t,
                "payout_id": f"{ids}p{i}",
                "merchant_id": merchant,
                "amount_minor": rng.randrange(1000, 900000),
                "currency": "EUR",
                "destination_fingerprint": f"iban-{merchant}",
            }
        out.append(SampleRecord(topic, merchant.encode(), orjson.dumps(value)))
    return out
