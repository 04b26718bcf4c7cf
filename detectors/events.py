"""Validated input events, as frozen dataclasses.

Money is always an integer number of minor units (cents); times are integer
milliseconds since the Unix epoch (UTC), parsed from the RFC 3339
`occurred_at` of the event, which is the event time every window uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "EVENT_CLASS",
    "Event",
    "Order",
    "Payout",
    "Refund",
    "RefundInitiator",
    "SourcePosition",
    "Topic",
    "VoucherRedemption",
]


class Topic(StrEnum):
    """The logical input streams. Kafka topic names are configurable; these are not."""

    ORDERS = "orders"
    REFUNDS = "refunds"
    VOUCHER_REDEMPTIONS = "voucher-redemptions"
    PAYOUTS = "payouts"


class RefundInitiator(StrEnum):
    USER = "user"
    MERCHANT = "merchant"
    PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class Order:
    event_id: str
    occurred_at_ms: int
    order_id: str
    user_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    device_id: str | None = None
    ip: str | None = None
    payment_fingerprint: str | None = None
    voucher_id: str | None = None
    poi_id: str | None = None
    city: str | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    event_id: str
    occurred_at_ms: int
    refund_id: str
    order_id: str
    user_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    reason: str | None = None
    initiated_by: RefundInitiator | None = None
    # Derived by the pipeline from the merchant's own orders and payouts
    # (detectors.paid_out), never read from the producer's record: when the
    # refunded order was placed and how long before the refund (None: an
    # order the book does not know), and the time of the merchant's latest
    # payout at or before the refund that came after that order (None: the
    # order was not paid out yet, or is unknown).
    order_placed_at_ms: int | None = None
    order_age_ms: int | None = None
    paid_out_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class VoucherRedemption:
    event_id: str
    occurred_at_ms: int
    redemption_id: str
    voucher_id: str
    user_id: str
    merchant_id: str
    face_value_minor: int
    subsidy_minor: int
    currency: str
    campaign_id: str | None = None
    order_id: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class Payout:
    event_id: str
    occurred_at_ms: int
    payout_id: str
    merchant_id: str
    amount_minor: int
    currency: str
    destination_fingerprint: str


Event = Order | Refund | VoucherRedemption | Payout

EVENT_CLASS: dict[Topic, type[Order] | type[Refund] | type[VoucherRedemption] | type[Payout]] = {
    Topic.ORDERS: Order,
    Topic.REFUNDS: Refund,
    Topic.VOUCHER_REDEMPTIONS: VoucherRedemption,
    Topic.PAYOUTS: Payout,
}


@dataclass(frozen=True, slots=True)
class SourcePosition:
    """Where an event was read from. Used to tell a redelivery (same position)
    from an upstream duplicate (same event_id, new position)."""

    topic: str
    partition: int
    offset: int

    def token(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"
