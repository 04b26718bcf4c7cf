"""One decode path: a record is decoded once, where it enters (stream.codec
Incoming), and the pipeline judges that decode result as it is."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from detectors.events import Topic
from detectors.rulebook import Rulebook
from stream.codec import DeadLetter, Decoded, Incoming, SourceRecord, decode
from stream.faust_wiring import source_record as faust_record
from stream.pipeline import Pipeline, dead_letter_output
from stream.settings import Settings
from tests.unit.test_contract import ORDER

NOW = 1_800_000_000_000  # after ORDER's occurred_at


def record(value: bytes | None, offset: int = 7, key: bytes | None = b"m-1") -> SourceRecord:
    return SourceRecord("orders", 1, offset, key, value, 1_700_000_000_000)


class NoStore:
    """A store for a rule book without rules: no event asks it anything."""

    async def apply(self, events: Any, after: Any = None) -> list[Any]:
        assert not events
        return []

    async def claim_incidents(self, claims: Any) -> list[Any]:
        assert not claims
        return []


def pipeline() -> Pipeline:
    return Pipeline(Settings(), NoStore(), Rulebook("none", "1", ()))  # type: ignore[arg-type]


def test_read_decodes_and_carries_the_record() -> None:
    good = Incoming.read(Topic.ORDERS, record(orjson.dumps(ORDER)), 1024)
    bad = Incoming.read(Topic.ORDERS, record(b"{", offset=8), 1024)
    assert isinstance(good.decoded, Decoded) and good.decoded.event.event_id == ORDER["event_id"]
    assert isinstance(bad.decoded, DeadLetter) and bad.decoded.kind == "invalid_json"
    assert good.record.offset == 7 and bad.record.offset == 8
    assert good.topic is Topic.ORDERS and good.incomplete == frozenset()


def test_incoming_is_frozen() -> None:
    item = Incoming.read(Topic.ORDERS, record(b"{}"), 1024)
    with pytest.raises(dataclasses.FrozenInstanceError):
        item.incomplete = frozenset({Topic.PAYOUTS})  # type: ignore[misc]
    marked = dataclasses.replace(item, incomplete=frozenset({Topic.PAYOUTS}))
    assert marked.decoded is item.decoded and item.incomplete == frozenset()


async def test_the_pipeline_judges_the_given_decode_result_without_decoding_again() -> None:
    valid = decode(Topic.ORDERS, record(orjson.dumps(ORDER)), 1024)
    assert isinstance(valid, Decoded)
    # The bytes no longer decode, and a valid record is marked oversize: if the
    # pipeline decoded again, the first would be dead-lettered and the second not.
    undecodable_bytes = Incoming(Topic.ORDERS, Decoded(record(b"\xff", offset=1), valid.event))
    marked = DeadLetter(record(orjson.dumps(ORDER), offset=2), "oversize", "said the caller")
    result = await pipeline().process_mixed(
        [undecodable_bytes, Incoming(Topic.ORDERS, marked)], NOW
    )
    assert result.valid == 1 and result.valid_by_topic == {"orders": 1}
    assert result.dead_letters == [marked]


async def test_an_event_dated_beyond_the_skew_is_dead_lettered_at_processing_time() -> None:
    item = Incoming.read(Topic.ORDERS, record(orjson.dumps(ORDER)), 1024)
    assert isinstance(item.decoded, Decoded)
    at = item.decoded.event.occurred_at_ms
    skew_ms = Settings().max_future_skew_s * 1000
    late_enough = await pipeline().process_mixed([item], at - skew_ms)
    too_early = await pipeline().process_mixed([item], at - skew_ms - 1)
    assert late_enough.valid == 1 and not late_enough.dead_letters
    (letter,) = too_early.dead_letters
    assert letter.kind == "bad_time" and letter.record == item.record


def test_dead_letter_output_is_the_dlq_record_keyed_like_its_source() -> None:
    settings = Settings()
    letter = DeadLetter(record(b"x" * 100), "processing_error", "boom")
    out = dead_letter_output(letter, settings, NOW)
    assert out.topic == settings.topics.dlq and out.key == b"m-1"
    assert orjson.loads(out.value) == letter.to_wire(NOW, settings.dlq_value_max_bytes)


def test_faust_and_aiokafka_messages_make_the_same_record() -> None:
    fields = {"topic": "orders", "partition": 3, "offset": 9, "key": b"k", "value": b"v"}
    from_aiokafka = SourceRecord.of_consumer_record(SimpleNamespace(**fields, timestamp=1_234))
    from_faust = faust_record(SimpleNamespace(**fields, timestamp=1.234))
    assert from_aiokafka == from_faust == SourceRecord("orders", 3, 9, b"k", b"v", 1_234)
