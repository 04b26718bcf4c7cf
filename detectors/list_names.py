"""The control plane's lists and the entity types they hold: shared by the
control records (detectors.control) and the rule language
(`where: {list: watch}`, detectors.rules_lists), in a module of their own so
that the rule language does not depend on the control records, which
depend on it (a `ruleset` record is checked by parsing its rules)."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ListEntityType", "ListName"]


class ListName(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"
    WATCH = "watch"


class ListEntityType(StrEnum):
    USER = "user"
    DEVICE = "device"
    PAYMENT = "payment"
    IP = "ip"
    MERCHANT = "merchant"
    CAMPAIGN = "campaign"
