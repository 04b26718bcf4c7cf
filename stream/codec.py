"""Bytes from Kafka → a validated event, or a dead-letter record that says why not.

Input topics are consumed as raw bytes (faust's own codecs skip an
undecodable message with only a log line). Decoding here means every bad
input becomes a `fraud-dlq` record with a readable reason, and a metric.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from detectors.contract import validate_event
from detectors.errors import ContractViolation
from detectors.events import Event, SourcePosition, Topic
from detectors.timestamps import format_rfc3339_ms

__all__ = ["DeadLetter", "Decoded", "Incoming", "SourceRecord", "decode"]


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One Kafka record as the pipeline sees it, independent of faust."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int

    @property
    def position(self) -> SourcePosition:
        return SourcePosition(self.topic, self.partition, self.offset)

    @classmethod
    def of_consumer_record(cls, m: Any) -> SourceRecord:
        """From an aiokafka ConsumerRecord (its timestamp is in ms; faust's
        messages carry seconds, see stream.worker)."""
        return cls(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: SourceRecord
    kind: str
    message: str
    field: str | None = None

    def to_wire(self, received_at_ms: int, value_max_bytes: int) -> dict[str, Any]:
        """The `fraud-dlq` record. Values above `value_max_bytes` are cut, with
        their full size and SHA-256 kept so the original (still in the source
        topic at the given offset) can be found and verified."""
        value = self.record.value or b""
        key = self.record.key
        return {
            "source_topic": self.record.topic,
            "partition": self.record.partition,
            "offset": self.record.offset,
            "key_b64": None if key is None else base64.b64encode(key).decode(),
            "value_b64": base64.b64encode(value[:value_max_bytes]).decode(),
            "value_size": len(value),
            "value_truncated": len(value) > value_max_bytes,
            "value_sha256": hashlib.sha256(value).hexdigest(),
            "error": {"kind": self.kind, "field": self.field, "message": self.message},
            "received_at": format_rfc3339_ms(received_at_ms),
        }


@dataclass(frozen=True, slots=True)
class Decoded:
    record: SourceRecord
    event: Event


@dataclass(frozen=True, slots=True)
class Incoming:
    """One input record on its way through the pipeline, decoded once where it
    enters: the worker must read an event's time before the pipeline runs (to
    merge topics by event time), and the pipeline must not decode it again."""

    topic: Topic
    decoded: Decoded | DeadLetter
    # Input topics not read up to this record's event time when it was
    # released (a stalled partition): rules reading them decide degraded.
    incomplete: frozenset[Topic] = frozenset()

    @classmethod
    def read(cls, topic: Topic, record: SourceRecord, max_bytes: int) -> Incoming:
        return cls(topic, decode(topic, record, max_bytes))

    @property
    def record(self) -> SourceRecord:
        return self.decoded.record


def decode(topic: Topic, record: SourceRecord, max_bytes: int) -> Decoded | DeadLetter:
    """Never raises for bad input: every failure is a DeadLetter with a reason."""
    value = record.value
    if value is None:
        return DeadLetter(record, "empty_value", "record has no value (tombstone)")
    if len(value) > max_bytes:
        return DeadLetter(record, "oversize", f"value is {len(value)} bytes, limit is {max_bytes}")
    try:
        payload = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return _undecodable(record, value, exc)
    try:
        return Decoded(record, validate_event(topic, payload))
    except ContractViolation as exc:
        return DeadLetter(record, exc.kind, exc.message, exc.field)


def _undecodable(record: SourceRecord, value: bytes, exc: orjson.JSONDecodeError) -> DeadLetter:
    # Classify only on the error path: the happy path pays for no extra UTF-8 pass.
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as uerr:
        return DeadLetter(
            record, "invalid_utf8", f"value is not valid UTF-8: {uerr.reason} at byte {uerr.start}"
        )
    return DeadLetter(record, "invalid_json", f"value is not valid JSON: {exc}")
