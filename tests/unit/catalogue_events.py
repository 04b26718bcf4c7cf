"""Small builders for the catalogue's rule tests: contract events with
sensible defaults, so each test states only what matters to its rule."""

from __future__ import annotations

import itertools

from detectors.events import Order, Payout, Refund, RefundInitiator, Topic, VoucherRedemption
from detectors.timestamps import parse_rfc3339_ms
from tests.unit.rule_harness import Fed

T0 = parse_rfc3339_ms("2026-11-10T12:00:00Z")
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


def order(
    at: int,
    user: str = "u1",
    merchant: str = "m1",
    amount: int = 1500,
    device: str | None = None,
    ip: str | None = None,
    payment: str | None = None,
    order_id: str | None = None,
    voucher: str | None = None,
) -> Fed:
    return Topic.ORDERS, Order(
        _id("e"),
        at,
        order_id or _id("o"),
        user,
        merchant,
        amount,
        "EUR",
        device_id=device or f"dev-{user}",
        ip=ip or f"ip-{user}",
        payment_fingerprint=payment or f"card-{user}",
        voucher_id=voucher,
    )


def redemption(
    at: int,
    user: str = "u1",
    merchant: str = "m1",
    device: str | None = None,
    campaign: str = "c1",
    subsidy: int = 500,
    face: int = 800,
) -> Fed:
    return Topic.VOUCHER_REDEMPTIONS, VoucherRedemption(
        _id("e"),
        at,
        _id("r"),
        _id("v"),
        user,
        merchant,
        face,
        subsidy,
        "EUR",
        campaign_id=campaign,
        device_id=device or f"dev-{user}",
    )


def refund(
    at: int,
    order_id: str,
    user: str = "u1",
    merchant: str = "m1",
    amount: int = 1500,
    by: RefundInitiator = RefundInitiator.USER,
) -> Fed:
    return Topic.REFUNDS, Refund(
        _id("e"), at, _id("rf"), order_id, user, merchant, amount, "EUR", initiated_by=by
    )


def payout(at: int, merchant: str = "m1", amount: int = 10_000, dest: str = "iban-m1") -> Fed:
    return Topic.PAYOUTS, Payout(_id("e"), at, _id("po"), merchant, amount, "EUR", dest)


def order_id_of(fed: Fed) -> str:
    event = fed[1]
    assert isinstance(event, Order)
    return event.order_id
