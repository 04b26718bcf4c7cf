"""The input wire contract: one field table per topic, a fast validator built
from it, and the JSON Schema documents exported from the same table.

Why a table and not a generic JSON Schema interpreter: validation runs on the
hot path for every event, and a table of small typed checks costs a few
microseconds. The shipped JSON Schemas are generated from this table and a
differential test checks them against an independent JSON Schema validator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from detectors.errors import ContractViolation
from detectors.events import EVENT_CLASS, Event, RefundInitiator, Topic
from detectors.timestamps import RFC3339_PATTERN, parse_rfc3339_ms

__all__ = [
    "FIELDS",
    "MAX_AMOUNT_MINOR",
    "MAX_ID_LENGTH",
    "MAX_TEXT_LENGTH",
    "FieldKind",
    "FieldSpec",
    "json_schema",
    "validate_event",
]

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 512
MAX_AMOUNT_MINOR = 10**15  # far above any single marketplace payment; guards overflow


class FieldKind(StrEnum):
    ID = "id"
    TEXT = "text"
    MONEY = "money"
    CURRENCY = "currency"
    TIMESTAMP = "timestamp"
    INITIATOR = "initiator"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: FieldKind
    required: bool


def _fields(required: str, optional: str, kinds: Mapping[str, FieldKind]) -> tuple[FieldSpec, ...]:
    req = [FieldSpec(n, kinds.get(n, FieldKind.ID), True) for n in required.split()]
    opt = [FieldSpec(n, kinds.get(n, FieldKind.ID), False) for n in optional.split()]
    return tuple(req + opt)


_KINDS = {
    "occurred_at": FieldKind.TIMESTAMP,
    "amount_minor": FieldKind.MONEY,
    "face_value_minor": FieldKind.MONEY,
    "subsidy_minor": FieldKind.MONEY,
    "currency": FieldKind.CURRENCY,
    "reason": FieldKind.TEXT,
    "city": FieldKind.TEXT,
    "initiated_by": FieldKind.INITIATOR,
}

FIELDS: dict[Topic, tuple[FieldSpec, ...]] = {
    Topic.ORDERS: _fields(
        "event_id occurred_at order_id user_id merchant_id amount_minor currency",
        "device_id ip payment_fingerprint voucher_id poi_id city",
        _KINDS,
    ),
    Topic.REFUNDS: _fields(
        "event_id occurred_at refund_id order_id user_id merchant_id amount_minor currency",
        "reason initiated_by",
        _KINDS,
    ),
    Topic.VOUCHER_REDEMPTIONS: _fields(
        "event_id occurred_at redemption_id voucher_id user_id merchant_id "
        "face_value_minor subsidy_minor currency",
        "campaign_id order_id device_id",
        _KINDS,
    ),
    Topic.PAYOUTS: _fields(
        "event_id occurred_at payout_id merchant_id amount_minor currency destination_fingerprint",
        "",
        _KINDS,
    ),
}

_CURRENCY = re.compile(r"[A-Z]{3}")


def _check_id(name: str, value: Any) -> str:
    if type(value) is not str:
        raise ContractViolation("wrong_type", f"expected string, got {_json_type(value)}", name)
    if not value or len(value) > MAX_ID_LENGTH:
        raise ContractViolation(
            "out_of_range", f"length must be 1..{MAX_ID_LENGTH}, got {len(value)}", name
        )
    return value


def _check_text(name: str, value: Any) -> str:
    if type(value) is not str:
        raise ContractViolation("wrong_type", f"expected string, got {_json_type(value)}", name)
    if len(value) > MAX_TEXT_LENGTH:
        raise ContractViolation(
            "out_of_range", f"length must be at most {MAX_TEXT_LENGTH}, got {len(value)}", name
        )
    return value


def _check_money(name: str, value: Any) -> int:
    # JSON has one number type: 1500.0 is the integer 1500 (as JSON Schema's
    # "integer" says), 1500.5 is not. Booleans are never numbers.
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise ContractViolation(
            "wrong_type", f"expected integer minor units, got {_json_type(value)}", name
        )
    if value < 0 or value > MAX_AMOUNT_MINOR:
        raise ContractViolation(
            "out_of_range", f"must be between 0 and {MAX_AMOUNT_MINOR}, got {value}", name
        )
    return value


def _check_currency(name: str, value: Any) -> str:
    if type(value) is not str:
        raise ContractViolation("wrong_type", f"expected string, got {_json_type(value)}", name)
    if _CURRENCY.fullmatch(value) is None:
        raise ContractViolation(
            "bad_format", f"expected ISO 4217 code like EUR, got {value!r:.40}", name
        )
    return value


def _check_timestamp(name: str, value: Any) -> int:
    if type(value) is not str:
        raise ContractViolation("wrong_type", f"expected string, got {_json_type(value)}", name)
    try:
        return parse_rfc3339_ms(value)
    except ValueError as exc:
        raise ContractViolation("bad_time", f"{exc}; got {value!r:.60}", name) from None


def _check_initiator(name: str, value: Any) -> RefundInitiator:
    try:
        return RefundInitiator(value)
    except ValueError:
        allowed = ", ".join(i.value for i in RefundInitiator)
        raise ContractViolation(
            "bad_enum", f"expected one of {allowed}, got {value!r:.40}", name
        ) from None


_CHECKERS: dict[FieldKind, Callable[[str, Any], Any]] = {
    FieldKind.ID: _check_id,
    FieldKind.TEXT: _check_text,
    FieldKind.MONEY: _check_money,
    FieldKind.CURRENCY: _check_currency,
    FieldKind.TIMESTAMP: _check_timestamp,
    FieldKind.INITIATOR: _check_initiator,
}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _build_validator(topic: Topic) -> Callable[[Mapping[str, Any]], Event]:
    plan = tuple(
        (
            spec.name,
            "occurred_at_ms" if spec.kind is FieldKind.TIMESTAMP else spec.name,
            _CHECKERS[spec.kind],
            spec.required,
        )
        for spec in FIELDS[topic]
    )
    cls = EVENT_CLASS[topic]

    def validate(payload: Mapping[str, Any]) -> Event:
        values: dict[str, Any] = {}
        get = payload.get
        for name, attr, check, required in plan:
            value = get(name)
            if value is None:
                if required:
                    kind = "missing_field" if name not in payload else "wrong_type"
                    raise ContractViolation(kind, "required field is missing or null", name)
                continue
            values[attr] = check(name, value)
        return cls(**values)

    return validate


VALIDATORS: dict[Topic, Callable[[Mapping[str, Any]], Event]] = {
    topic: _build_validator(topic) for topic in Topic
}


def validate_event(topic: Topic, payload: Any) -> Event:
    """Validate a decoded JSON value against `topic`'s contract; unknown fields are ignored."""
    if type(payload) is not dict:
        raise ContractViolation(
            "not_an_object", f"expected a JSON object, got {_json_type(payload)}"
        )
    return VALIDATORS[topic](payload)


_SCHEMA_FRAGMENTS: dict[FieldKind, dict[str, Any]] = {
    FieldKind.ID: {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
    FieldKind.TEXT: {"type": "string", "maxLength": MAX_TEXT_LENGTH},
    FieldKind.MONEY: {"type": "integer", "minimum": 0, "maximum": MAX_AMOUNT_MINOR},
    FieldKind.CURRENCY: {"type": "string", "pattern": "^[A-Z]{3}$"},
    FieldKind.TIMESTAMP: {"type": "string", "format": "date-time", "pattern": RFC3339_PATTERN},
    FieldKind.INITIATOR: {"enum": [i.value for i in RefundInitiator]},
}


def json_schema(topic: Topic) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `topic`'s events, generated from the field table."""
    properties: dict[str, Any] = {}
    for spec in FIELDS[topic]:
        fragment = dict(_SCHEMA_FRAGMENTS[spec.kind])
        if not spec.required:
            fragment = {"anyOf": [fragment, {"type": "null"}]}
        properties[spec.name] = fragment
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://fraudstream.dev/schemas/{topic.value}.schema.json",
        "title": f"fraudstream input event: {topic.value}",
        "type": "object",
        "required": [s.name for s in FIELDS[topic] if s.required],
        "properties": properties,
        "additionalProperties": True,
    }
