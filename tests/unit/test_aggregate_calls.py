"""The script call's flat arguments and the reply's decoding, without Redis:
the layout aggregates.lua reads (see its header)."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.counted import ReportFloor
from detectors.engine import AggregateRequest, EntityGroup, GroupRequest, Observation
from detectors.events import Topic
from detectors.rules_entities import EntityType
from stream.store import aggregate_calls
from stream.store import keys as keys_
from stream.store.base import EventRequests, EventStatus
from stream.store.keys import KeyHasher
from stream.store.slot_tags import slot_tag
from tests.store_cases.requests import event_requests

U = (EntityType.USER,)
ORDERS = frozenset({Topic.ORDERS})
COUNT = AggregateSpec(AggregateKind.COUNT, ORDERS, U, window_ms=600_000, bucket_ms=60_000)
SUM = AggregateSpec(
    AggregateKind.SUM, ORDERS, U, field="amount_minor", window_ms=3_600_000, bucket_ms=300_000
)
DEVICES = AggregateSpec(AggregateKind.DISTINCT, ORDERS, U, field="device_id", window_ms=86_400_000)
FIRST = AggregateSpec(AggregateKind.FIRST_SEEN, ORDERS, U)
LIMITS = aggregate_calls.Limits(7_200_000, 3_600_000, 400 * 86_400_000, 3_600_000, 3_600_000)
HASHER = KeyHasher(b"unit-test-key-hash-secret-0123456789")
ALICE = "ns:" + HASHER.tag(U, ("alice",))
GUARD = keys_.event_guard("ns", slot_tag(0))


def _encode(events: list[EventRequests]) -> dict[int, aggregate_calls.AggregateCall]:
    templates = aggregate_calls.Templates(LIMITS)
    return aggregate_calls.encode(
        events, templates, "ns", lambda tag: 0, lambda eid: "h-" + eid, HASHER
    )


def test_ops_carry_spec_key_and_contribution_with_null_for_a_read() -> None:
    ev = event_requests(
        "e1",
        1_000,
        [
            AggregateRequest(COUNT, ("alice",), 1),
            AggregateRequest(SUM, ("alice",), None),  # read only
            AggregateRequest(DEVICES, ("alice",), "d-9"),
            AggregateRequest(FIRST, ("alice",), 1),
        ],
        "EUR",
    )
    (call,) = _encode([ev]).values()
    keys = list(call.keys)
    guard = keys.index(GUARD) + 1
    ops = call.flat[5:]
    assert call.flat[:5] == [guard, "h-e1", 1_000, 0, 4]  # no ring kept: no event id
    # A distinct member travels as its keyed hash, never as the raw value.
    assert [ops[i + 2] for i in range(0, len(ops), 3)] == [1, None, HASHER.member("d-9"), 1]
    assert [keys[ops[i + 1] - 1] for i in range(0, len(ops), 3)] == [
        f"{ALICE}:a:{COUNT.agg_id}",
        f"{ALICE}:a:{SUM.agg_id}:EUR",
        f"{ALICE}:a:{DEVICES.agg_id}",
        f"{ALICE}:first",
    ]
    assert not any("alice" in k for k in keys) and "d-9" not in call.flat
    # The JSON the script decodes: null stays in place, so positions hold.
    assert orjson.loads(orjson.dumps(call.flat))[5 + 5] is None


def test_a_unit_that_only_reads_or_feeds_unguarded_aggregates_takes_no_guard() -> None:
    reads = event_requests("e1", 5, [AggregateRequest(COUNT, ("bob",), None)])
    distinct_only = event_requests("e2", 6, [AggregateRequest(DEVICES, ("bob",), "d-1")])
    (call,) = _encode([reads, distinct_only]).values()
    assert call.flat[0] == 0 and call.flat[8] == 0
    assert GUARD not in call.keys


def test_an_event_goes_through_the_calls_guard_once_and_a_repeat_goes_again() -> None:
    """The first unit of an event that adds to a count names the guard; its
    other counting units in the same call reuse that verdict (-1). The same
    event id again in the batch (a producer duplicate) is checked again."""

    def event(event_id: str) -> EventRequests:
        reqs = [
            AggregateRequest(DEVICES, ("carol",), "d-1"),  # no guard needed
            AggregateRequest(COUNT, ("alice",), 1),
            AggregateRequest(COUNT, ("bob",), 1),
        ]
        return event_requests(event_id, 1_000, reqs, "EUR")

    (call,) = _encode([event("e1"), event("e1")]).values()
    guard = list(call.keys).index(GUARD) + 1
    units = [call.flat[i] for i in range(0, len(call.flat), 8)]
    assert sorted(units[:3]) == sorted(units[3:]) == [-1, 0, guard]
    assert units.index(guard) < units.index(-1) and units.index(guard, 3) < units.index(-1, 3)


def test_each_slot_has_its_own_guard() -> None:
    ev = event_requests(
        "e1", 1_000, [AggregateRequest(COUNT, ("alice",), 1), AggregateRequest(COUNT, ("bob",), 1)]
    )
    slots = {HASHER.tag(U, ("alice",)): 5, HASHER.tag(U, ("bob",)): 9}
    calls = aggregate_calls.encode(
        [ev], aggregate_calls.Templates(LIMITS), "ns", slots.__getitem__, str, HASHER
    )
    assert {s: c.guard for s, c in calls.items()} == {
        s: keys_.event_guard("ns", slot_tag(s)) for s in (5, 9)
    }
    assert all(c.flat[0] == c.keys[c.guard] for c in calls.values())


def test_reply_decoding_per_kind() -> None:
    ev = event_requests(
        "e1",
        1_000,
        [
            AggregateRequest(COUNT, ("alice",), 1),
            AggregateRequest(SUM, ("alice",), None),
            AggregateRequest(DEVICES, ("alice",), "d-9"),
            AggregateRequest(FIRST, ("alice",), 1),
        ],
        "EUR",
    )
    calls = _encode([ev])
    # status 0 (duplicate); count 3 ending in bucket 9; sum too late (-1);
    # 2 devices, newest at 999 ms; first seen at 500 ms.
    reply = [0, 3, 9, -1, 0, 2, 999, 500, 0]
    (obs,) = aggregate_calls.decode([ev], calls, {0: reply})
    assert obs.status is EventStatus.DUPLICATE
    assert obs.values == {
        COUNT.agg_id: Observation(3, 600_000),
        SUM.agg_id: Observation(None, 0),
        DEVICES.agg_id: Observation(2, 1_000),
        FIRST.agg_id: Observation(500, 0),
    }
    assert all(type(o) is Observation for o in obs.values.values())


def test_sums_are_kept_per_currency_and_counts_are_not() -> None:
    def event(event_id: str, currency: str) -> EventRequests:
        reqs = [AggregateRequest(COUNT, ("alice",), 1), AggregateRequest(SUM, ("alice",), 10)]
        return event_requests(event_id, 1_000, reqs, currency)

    (call,) = _encode([event("e1", "EUR"), event("e2", "JPY"), event("e3", "EUR")]).values()
    ops = [call.flat[5 + 11 * u : 11 + 11 * u] for u in range(3)]
    key_of = {v: k for k, v in call.keys.items()}
    sums = [key_of[unit[4]] for unit in ops]
    counts = {key_of[unit[1]] for unit in ops}
    assert sums == [f"{ALICE}:a:{SUM.agg_id}:{c}" for c in ("EUR", "JPY", "EUR")]
    assert counts == {f"{ALICE}:a:{COUNT.agg_id}"}


def test_a_sum_without_the_events_currency_is_refused() -> None:
    ev = event_requests("e1", 1_000, [AggregateRequest(SUM, ("alice",), 10)])
    with pytest.raises(ValueError, match="currency"):
        _encode([ev])


RINGS = dataclasses.replace(LIMITS, counted_events=20)


def _group(floor: ReportFloor) -> EntityGroup:
    return EntityGroup(U, (COUNT, SUM), (ReportFloor(3), floor))


def test_with_rings_a_counting_unit_carries_its_event_id_and_a_read_does_not() -> None:
    count = GroupRequest(_group(ReportFloor()), ("alice",), (1, 250))
    read = GroupRequest(_group(ReportFloor()), ("bob",), (None, None))
    events = [EventRequests("e1", 1_000, [count], "EUR"), EventRequests("e2", 2_000, [read], "EUR")]
    templates = aggregate_calls.Templates(RINGS)
    (call,) = aggregate_calls.encode(events, templates, "ns", lambda t: 0, str, HASHER).values()
    assert call.flat[3] == "e1" and call.flat[11 + 3] == 0


def test_report_floors_travel_in_spec_rows_per_currency() -> None:
    """The script reads a floor from the op's spec row: one row per floor,
    and a sum's floor is the one of the event's currency."""
    floors = ReportFloor(0, (("EUR", 8_000), ("JPY", 900)))
    templates = aggregate_calls.Templates(RINGS)
    events = [
        EventRequests(f"e{c}", 1_000, [GroupRequest(_group(floors), ("alice",), (1, 5))], c)
        for c in ("EUR", "JPY", "GBP")
    ]
    (call,) = aggregate_calls.encode(events, templates, "ns", lambda t: 0, str, HASHER).values()
    table = orjson.loads(templates.table_json)
    rows = [[table[call.flat[u * 11 + 5 + i] - 1][5] for i in (0, 3)] for u in range(3)]
    assert rows == [[3, 8_000], [3, 900], [3, 0]]  # GBP: no rule judges it, never reported


def test_reply_decoding_attaches_rings_to_their_values() -> None:
    group = _group(ReportFloor(1))
    ev = EventRequests("e9", 1_000, [GroupRequest(group, ("alice",), (1, 5))], "EUR")
    calls = aggregate_calls.encode(
        [ev], aggregate_calls.Templates(RINGS), "ns", lambda t: 0, str, HASHER
    )
    # status, count 3 (reported: its value at position 2, counting from 1),
    # sum 15 (reported: position 4); then the rings.
    reply = [1, 3, 9, 15, 0, 2, 2, b"500|e1", b"1000|e9", 4, 1, b"1000|e9"]
    (obs,) = aggregate_calls.decode([ev], calls, {0: reply})
    assert obs.counted == {COUNT.agg_id: ((500, "e1"), (1_000, "e9")), SUM.agg_id: ((1_000, "e9"),)}
    assert obs.values[COUNT.agg_id] == Observation(3, 600_000)


def test_a_unit_whose_aggregates_keep_no_ring_carries_no_event_id() -> None:
    """Only aggregates a rule lists keep rings: their spec rows say so, and
    a unit adding to none of them leaves the event id out."""
    kept = EntityGroup(U, (COUNT, SUM), (None, None), (False, True))
    none = EntityGroup(U, (COUNT, SUM), (None, None), (False, False))
    events = [
        EventRequests("e1", 1_000, [GroupRequest(kept, ("alice",), (1, 250))], "EUR"),
        EventRequests("e2", 2_000, [GroupRequest(none, ("bob",), (1, 250))], "EUR"),
    ]
    templates = aggregate_calls.Templates(RINGS)
    (call,) = aggregate_calls.encode(events, templates, "ns", lambda t: 0, str, HASHER).values()
    table = orjson.loads(templates.table_json)
    ring_flags = [[table[call.flat[u * 11 + 5 + i] - 1][6] for i in (0, 3)] for u in range(2)]
    assert ring_flags == [[0, 1], [0, 0]]
    assert call.flat[3] == "e1" and call.flat[11 + 3] == 0


def test_a_group_with_a_floor_but_no_ring_is_refused() -> None:
    """A floor reads a ring back: without one it would silently list nothing."""
    with pytest.raises(ValueError, match="must keep a ring"):
        EntityGroup(U, (COUNT, SUM), (ReportFloor(3), None), (False, False))
