from __future__ import annotations

import base64
import hashlib

import orjson

from detectors.events import Order, Topic
from stream.codec import DeadLetter, Decoded, SourceRecord, decode
from tests.unit.test_contract import ORDER


def record(value: bytes | None, key: bytes | None = b"m-1") -> SourceRecord:
    return SourceRecord("orders", 2, 41, key, value, 1_700_000_000_000)


def dead(value: bytes | None, limit: int = 1024) -> DeadLetter:
    out = decode(Topic.ORDERS, record(value), limit)
    assert isinstance(out, DeadLetter), out
    return out


def test_valid_bytes_decode_to_event() -> None:
    out = decode(Topic.ORDERS, record(orjson.dumps(ORDER)), 1024)
    assert isinstance(out, Decoded) and isinstance(out.event, Order)
    assert out.record.position.token() == "orders/2/41"


def test_each_bad_input_gets_its_reason() -> None:
    assert dead(b'{"event_id": ').kind == "invalid_json"
    assert dead(b'{"a": "\xff"}').kind == "invalid_utf8"
    assert dead(None).kind == "empty_value"
    assert dead(b"x" * 2000).kind == "oversize"
    assert dead(b"[1]").kind == "not_an_object"
    assert dead(b"[" * 5000 + b"]" * 5000, limit=100_000).kind == "invalid_json"
    missing = dead(orjson.dumps({k: v for k, v in ORDER.items() if k != "user_id"}))
    assert (missing.kind, missing.field) == ("missing_field", "user_id")


def test_dead_letter_wire_record_keeps_what_is_needed_to_find_the_input() -> None:
    value = b"\xff" * 100
    wire = dead(value).to_wire(received_at_ms=0, value_max_bytes=10)
    assert wire["source_topic"] == "orders" and wire["partition"] == 2 and wire["offset"] == 41
    assert base64.b64decode(wire["key_b64"]) == b"m-1"
    assert base64.b64decode(wire["value_b64"]) == value[:10]
    assert wire["value_truncated"] is True and wire["value_size"] == 100
    assert wire["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert wire["error"]["kind"] == "invalid_utf8" and "UTF-8" in wire["error"]["message"]
    assert wire["received_at"] == "1970-01-01T00:00:00.000Z"


def test_null_key_is_kept_as_null() -> None:
    out = decode(Topic.ORDERS, record(b"{", key=None), 1024)
    assert isinstance(out, DeadLetter)
    assert out.to_wire(0, 10)["key_b64"] is None
