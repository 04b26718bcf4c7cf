from __future__ import annotations

from typing import Any

import pytest

from detectors.contract import MAX_AMOUNT_MINOR, validate_event
from detectors.errors import ContractViolation
from detectors.events import Order, Payout, Refund, RefundInitiator, Topic, VoucherRedemption
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms

ORDER: dict[str, Any] = {
    "event_id": "e-1",
    "occurred_at": "2026-11-02T12:00:00.123Z",
    "order_id": "o-1",
    "user_id": "u-1",
    "merchant_id": "m-1",
    "amount_minor": 1500,
    "currency": "EUR",
}
VALID: dict[Topic, dict[str, Any]] = {
    Topic.ORDERS: ORDER,
    Topic.REFUNDS: {**ORDER, "refund_id": "r-1", "initiated_by": "merchant", "reason": "late"},
    Topic.VOUCHER_REDEMPTIONS: {
        "event_id": "e-2",
        "occurred_at": "2026-11-02T12:00:00Z",
        "redemption_id": "rd-1",
        "voucher_id": "v-1",
        "user_id": "u-1",
        "merchant_id": "m-1",
        "face_value_minor": 1000,
        "subsidy_minor": 400,
        "currency": "EUR",
        "campaign_id": "c-1",
    },
    Topic.PAYOUTS: {
        "event_id": "e-3",
        "occurred_at": "2026-11-02T12:00:00+01:00",
        "payout_id": "p-1",
        "merchant_id": "m-1",
        "amount_minor": 99000,
        "currency": "EUR",
        "destination_fingerprint": "sha256:abc",
    },
}


def test_each_topic_validates_into_its_dataclass() -> None:
    expected = {
        Topic.ORDERS: Order,
        Topic.REFUNDS: Refund,
        Topic.VOUCHER_REDEMPTIONS: VoucherRedemption,
        Topic.PAYOUTS: Payout,
    }
    for topic, payload in VALID.items():
        event = validate_event(topic, payload)
        assert type(event) is expected[topic]
        assert event.event_id == payload["event_id"]


def test_order_fields_are_converted() -> None:
    event = validate_event(Topic.ORDERS, {**ORDER, "device_id": "d-1", "ip": None, "extra": [1]})
    assert isinstance(event, Order)
    assert event.occurred_at_ms == 1_793_620_800_123
    assert event.device_id == "d-1" and event.ip is None


def test_refund_initiator_is_an_enum() -> None:
    event = validate_event(Topic.REFUNDS, VALID[Topic.REFUNDS])
    assert isinstance(event, Refund) and event.initiated_by is RefundInitiator.MERCHANT


@pytest.mark.parametrize(
    ("change", "kind", "field"),
    [
        ({"user_id": None}, "wrong_type", "user_id"),
        ({"amount_minor": "1500"}, "wrong_type", "amount_minor"),
        ({"amount_minor": True}, "wrong_type", "amount_minor"),
        ({"amount_minor": 15.5}, "wrong_type", "amount_minor"),
        ({"amount_minor": -1}, "out_of_range", "amount_minor"),
        ({"amount_minor": MAX_AMOUNT_MINOR + 1}, "out_of_range", "amount_minor"),
        ({"event_id": ""}, "out_of_range", "event_id"),
        ({"event_id": "x" * 129}, "out_of_range", "event_id"),
        ({"currency": "eur"}, "bad_format", "currency"),
        ({"occurred_at": "2026-11-02T12:00:00"}, "bad_time", "occurred_at"),
        ({"occurred_at": "2026-11-02 12:00:00Z"}, "bad_time", "occurred_at"),
        ({"occurred_at": "2026-13-02T12:00:00Z"}, "bad_time", "occurred_at"),
        ({"occurred_at": "2026-11-02T12:00:00+25:00"}, "bad_time", "occurred_at"),
        ({"occurred_at": 1793620800}, "wrong_type", "occurred_at"),
        ({"occurred_at": "0001-01-01T00:00:00Z"}, "bad_time", "occurred_at"),
        ({"occurred_at": "9999-12-31T23:59:59Z"}, "bad_time", "occurred_at"),
        ({"device_id": 7}, "wrong_type", "device_id"),
    ],
)
def test_violations_name_kind_and_field(change: dict[str, Any], kind: str, field: str) -> None:
    with pytest.raises(ContractViolation) as info:
        validate_event(Topic.ORDERS, {**ORDER, **change})
    assert (info.value.kind, info.value.field) == (kind, field)
    assert field in str(info.value)


def test_missing_field_is_reported_as_missing() -> None:
    payload = dict(ORDER)
    del payload["merchant_id"]
    with pytest.raises(ContractViolation) as info:
        validate_event(Topic.ORDERS, payload)
    assert (info.value.kind, info.value.field) == ("missing_field", "merchant_id")


def test_bad_enum_lists_allowed_values() -> None:
    with pytest.raises(ContractViolation, match="user, merchant, platform"):
        validate_event(Topic.REFUNDS, {**VALID[Topic.REFUNDS], "initiated_by": "bot"})


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, None])
def test_non_object_is_rejected(payload: Any) -> None:
    with pytest.raises(ContractViolation) as info:
        validate_event(Topic.ORDERS, payload)
    assert info.value.kind == "not_an_object"


def test_integral_float_amount_is_accepted_as_int() -> None:
    event = validate_event(Topic.ORDERS, {**ORDER, "amount_minor": 1500.0})
    assert isinstance(event, Order) and event.amount_minor == 1500
    assert type(event.amount_minor) is int


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:00.5Z", 500),
        ("1970-01-01T00:00:00.123456789Z", 123),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1970-01-01T05:30:00+05:30", 0),
        ("2016-12-31T23:59:60Z", 1_483_228_800_000),  # leap second folds onto the next second
        ("2026-11-02t12:00:00z", 1_793_620_800_000),
    ],
)
def test_rfc3339_parsing(text: str, ms: int) -> None:
    assert parse_rfc3339_ms(text) == ms


def test_format_round_trips() -> None:
    for ms in (0, 1_793_620_800_123, 1_000, 86_399_999):
        assert parse_rfc3339_ms(format_rfc3339_ms(ms)) == ms
    assert format_rfc3339_ms(1_793_620_800_123) == "2026-11-02T12:00:00.123Z"


def test_unicode_digits_are_not_digits() -> None:
    with pytest.raises(ValueError):
        parse_rfc3339_ms("٢٠٢٦-11-02T12:00:00Z")
