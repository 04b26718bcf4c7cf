"""What the follower makes of the records it fetches (the Kafka side is in
tests/integration/test_control.py)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from detectors.control import KillSwitch, Provenance, Switch
from detectors.control_snapshot import EMPTY
from stream.control_follower import Rejected, decode, fold_messages

META = Provenance("c1", "alice", "why", 1_800_000_000_000)


@dataclass
class Message:
    offset: int
    key: bytes | None
    value: bytes | None


def on(offset: int, state: Switch = Switch.ON) -> Message:
    return Message(offset, b"kill-switch", orjson.dumps(KillSwitch(state, META).to_wire()))


def test_bad_records_are_reported_and_the_last_good_state_kept() -> None:
    rejected: list[Rejected] = []
    messages = [
        on(0),
        Message(1, b"kill-switch", b"{broken"),
        Message(2, None, b"{}"),
        Message(3, b"rule-mode:r1", orjson.dumps(KillSwitch(Switch.OFF, META).to_wire())),
    ]
    snapshot = fold_messages(EMPTY, messages, rejected.append)
    assert snapshot.kill_switch and snapshot.applied == 1
    assert [(r.offset, r.error.kind) for r in rejected] == [
        (1, "unknown"),
        (2, "unknown"),
        (3, "kill-switch"),
    ]
    assert "does not match" in str(rejected[2].error)


def test_a_kafka_tombstone_removes_the_key() -> None:
    assert decode(Message(0, b"kill-switch", None)) == ("kill-switch", None)
    snapshot = fold_messages(EMPTY, [on(0), Message(1, b"kill-switch", None)], print)
    assert not snapshot.kill_switch and snapshot.records == {}


def test_a_batch_without_good_records_keeps_the_same_snapshot() -> None:
    snapshot = fold_messages(EMPTY, [on(0)], print)
    assert fold_messages(snapshot, [Message(1, b"x", b"[]")], lambda r: None) is snapshot
