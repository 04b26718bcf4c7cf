"""Entities rules can key on, and where each is found in an event."""

from __future__ import annotations

from enum import StrEnum

from detectors.events import Event

__all__ = ["ENTITY_FIELDS", "EntityType", "entity_value"]


class EntityType(StrEnum):
    USER = "user"
    MERCHANT = "merchant"
    DEVICE = "device"
    PAYMENT = "payment"  # a payment instrument: buyer card/account or payout destination
    IP = "ip"
    VOUCHER = "voucher"
    CAMPAIGN = "campaign"
    ORDER = "order"  # e.g. the age of the order a refund is for


# Checked in order; the first attribute the event has (and is not None) wins.
# A payout's destination is the same kind of thing as a buyer's payment
# fingerprint, which is what lets a rule see a buyer paying with the
# merchant's own bank account.
ENTITY_FIELDS: dict[EntityType, tuple[str, ...]] = {
    EntityType.USER: ("user_id",),
    EntityType.MERCHANT: ("merchant_id",),
    EntityType.DEVICE: ("device_id",),
    EntityType.PAYMENT: ("payment_fingerprint", "destination_fingerprint"),
    EntityType.IP: ("ip",),
    EntityType.VOUCHER: ("voucher_id",),
    EntityType.CAMPAIGN: ("campaign_id",),
    EntityType.ORDER: ("order_id",),
}


def entity_value(event: Event, entity: EntityType) -> str | None:
    for name in ENTITY_FIELDS[entity]:
        value = getattr(event, name, None)
        if value is not None:
            return str(value)
    return None
