"""Event-time merging of co-partitioned input topics (stream.alignment)."""

from __future__ import annotations

import orjson

from detectors.events import Topic
from detectors.timestamps import format_rfc3339_ms
from stream.alignment import UNBOUNDED, UNKNOWN, EventTimeMerger, Frontier, Held, merge_time
from stream.codec import DeadLetter, Decoded, Incoming, SourceRecord, decode
from stream.frontier_exchange import FrontierExchange, decode_entries, encode_entries

MIN = 60_000
STALL_S = 60.0
TOPICS = {"orders": Topic.ORDERS, "payouts": Topic.PAYOUTS, "refunds": Topic.REFUNDS}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def held(topic: str, partition: int, offset: int, at_min: int, since: float = 0.0) -> Held:
    record = SourceRecord(topic, partition, offset, None, b"{}", 0)
    unused = DeadLetter(record, "empty_value", "not decoded in these tests")
    return Held(at_min * MIN, Incoming(TOPICS[topic], unused), None, since)


def merger(
    kafka_ends: dict[tuple[str, int], int],
    clock: Clock | None = None,
    max_held: int = 1000,
    grace_s: float = 0.0,
) -> EventTimeMerger:
    """`kafka_ends`: (topic, partition) → offset of the last record in Kafka."""

    def lagging() -> list[tuple[str, int]]:
        out = []
        for part, end in kafka_ends.items():
            delivered = m.delivered(part)
            if delivered is None or delivered < end:
                out.append(part)
        return out

    m = EventTimeMerger(TOPICS, MIN, STALL_S, max_held, lagging, clock or Clock(), grace_s)
    return m


def order_of(items: list[Held]) -> list[tuple[str, int]]:
    return [(h.record.topic, h.at_ms // MIN) for h in items]


def test_records_of_all_topics_come_out_in_event_time_order() -> None:
    m = merger({})
    m.add([held("payouts", 0, 0, 10), held("payouts", 0, 1, 500)])
    m.add([held("orders", 0, i, t) for i, t in enumerate([5, 20, 400, 600])])
    out = m.take_ready(100)
    assert order_of(out) == [
        ("orders", 5),
        ("payouts", 10),
        ("orders", 20),
        ("orders", 400),
        ("payouts", 500),
        ("orders", 600),
    ]
    assert len(m) == 0


def test_a_topic_ahead_is_held_until_its_lagging_co_partition_delivers() -> None:
    m = merger({("orders", 0): 99})  # orders has 100 records in Kafka
    m.add([held("payouts", 0, 0, 500)])
    assert m.take_ready(100) == []  # orders delivered nothing yet
    m.add([held("orders", 0, i, 100 + i) for i in range(50)])  # up to minute 149
    out = m.take_ready(1000)
    assert [t for t, _ in order_of(out)] == ["orders"] * 50  # payouts still ahead
    m.add([held("orders", 0, 50 + i, 450 + i) for i in range(50)])  # reaches 499: all delivered
    assert order_of(m.take_ready(1000))[-1] == ("payouts", 500)


def test_a_lagging_partition_holds_every_later_record_of_the_worker() -> None:
    """Users and devices span partitions, so partitions are merged too."""
    m = merger({("orders", 1): 10})
    m.add([held("orders", 1, 0, 100)])
    m.add([held("payouts", 0, 0, 500), held("orders", 0, 0, 90)])
    assert order_of(m.take_ready(10)) == [("orders", 90), ("orders", 100)]
    assert len(m) == 1  # payouts at 500 waits for orders partition 1


def test_records_of_all_partitions_come_out_in_event_time_order() -> None:
    m = merger({})
    m.add([held("orders", 1, 0, 30), held("orders", 1, 1, 40)])
    m.add([held("orders", 0, 0, 10), held("orders", 0, 1, 35)])
    assert [h.at_ms // MIN for h in m.take_ready(10)] == [10, 30, 35, 40]


def test_within_the_slack_records_go() -> None:
    m = merger({("orders", 0): 99})
    m.add([held("orders", 0, 0, 100)])
    m.add([held("payouts", 0, 0, 101)])  # one minute past orders: within the slack
    assert len(m.take_ready(10)) == 2


def test_a_record_waits_as_long_as_its_lagging_partition_makes_progress() -> None:
    """No wall-clock limit: a backlog that takes long to read is still merged."""
    clock = Clock()
    m = merger({("orders", 0): 999}, clock)
    m.add([held("payouts", 0, 0, 500)])
    for i in range(10):  # orders keep coming, slowly, for ten stall periods
        clock.now += STALL_S * 0.9
        m.add([held("orders", 0, i, 100 + i)])
        out = m.take_ready(10)
        assert [t for t, _ in order_of(out)] == ["orders"] and not out[0].incomplete
    assert len(m) == 1


def test_a_stalled_partition_stops_holding_and_marks_what_passes_it() -> None:
    clock = Clock()
    m = merger({("orders", 0): 99}, clock)
    m.add([held("orders", 0, 0, 100)])
    assert len(m.take_ready(10)) == 1  # orders released up to minute 100
    m.add([held("refunds", 0, 0, 101), held("payouts", 0, 0, 500)])
    clock.now = STALL_S - 1
    assert order_of(m.take_ready(10)) == [("refunds", 101)]  # within the slack
    clock.now = STALL_S + 1  # orders has not moved for the stall time
    out = m.take_ready(10)
    assert order_of(out) == [("payouts", 500)]
    assert out[0].incomplete == frozenset({"orders"})
    assert m.stalled == frozenset({("orders", 0)})


def test_records_within_the_slack_of_a_stalled_partition_are_complete() -> None:
    clock = Clock()
    m = merger({("orders", 0): 99}, clock)
    m.add([held("orders", 0, 0, 100)])
    m.take_ready(10)
    clock.now = STALL_S + 1
    m.add([held("refunds", 0, 0, 101), held("refunds", 0, 1, 102)])
    first, second = m.take_ready(10)
    assert first.incomplete == frozenset() and second.incomplete == frozenset({"orders"})


def test_past_the_limit_the_partitions_ahead_are_paused_and_resumed_when_drained() -> None:
    ends = {("orders", 0): 99}
    m = merger(ends, max_held=3)
    m.add([held("payouts", 0, i, 500 + i) for i in range(3)])
    m.add([held("refunds", 1, 0, 400)])
    assert m.take_ready(10) == []
    flow = m.flow()
    assert sorted(flow.pause) == [("payouts", 0), ("refunds", 1)] and flow.resume == ()
    assert m.paused == {("payouts", 0), ("refunds", 1)}
    assert sorted(m.flow().pause) == [("payouts", 0), ("refunds", 1)]  # named again
    # The lagging orders partition (never paused) catches up: everything goes.
    m.add([held("orders", 0, i, 300 + 3 * i) for i in range(100)])
    ends[("orders", 0)] = 99
    assert len(m.take_ready(1000)) == 104
    assert sorted(m.flow().resume) == [("payouts", 0), ("refunds", 1)] and not m.paused


def test_a_paused_partition_is_never_counted_as_stalled() -> None:
    """Paused on purpose for longer than the stall time, then drained: when it
    bounds the merge again its stall clock starts afresh."""
    clock = Clock()
    ends = {("refunds", 1): 50, ("orders", 0): 199}
    m = merger(ends, clock, max_held=1)
    m.add([held("refunds", 1, 0, 100), held("refunds", 1, 1, 700)])
    m.add([held("orders", 0, 0, 50)])
    m.take_ready(10)
    assert m.flow().pause == (("refunds", 1),)
    clock.now = 10 * STALL_S  # orders partition 0 keeps delivering meanwhile
    m.add([held("orders", 0, i, 50 + i) for i in range(1, 100)])
    assert [h.at_ms // MIN for h in m.take_ready(1000)][-1] == 149 and len(m) == 1
    ends[("orders", 0)] = 99  # orders caught up: refunds drains, still lagging in Kafka
    assert order_of(m.take_ready(1000)) == [("refunds", 700)]
    assert m.stalled == frozenset()
    flow = m.flow()
    assert flow.resume == (("refunds", 1),) and flow.pause == ()
    m.add([held("payouts", 1, 0, 800)])
    assert m.take_ready(10) == [] and m.stalled == frozenset()


def test_a_partition_that_just_delivered_holds_records_far_ahead_for_the_grace() -> None:
    """Its last fetch said it was caught up, but records produced since may be
    in flight: the high watermark a fetch reports is older than the records
    that meanwhile reached other partitions."""
    clock = Clock()
    m = merger({}, clock, grace_s=2.0)
    m.add([held("orders", 0, 0, 100)])
    assert len(m.take_ready(10)) == 1
    m.add([held("payouts", 0, 0, 101), held("payouts", 0, 1, 300)])
    assert order_of(m.take_ready(10)) == [("payouts", 101)]  # within the slack: goes
    clock.now = 1.0
    m.add([held("orders", 0, 1, 250)])  # the orders in flight arrive
    assert order_of(m.take_ready(10)) == [("orders", 250)]
    clock.now = 3.5  # orders quiet for longer than the grace: no longer a bound
    out = m.take_ready(10)
    assert order_of(out) == [("payouts", 300)] and not out[0].incomplete


def order_at(ms: int) -> Decoded | DeadLetter:
    value = orjson.dumps(
        {
            "event_id": "e1",
            "occurred_at": format_rfc3339_ms(ms),
            "order_id": "o1",
            "user_id": "u1",
            "merchant_id": "m1",
            "amount_minor": 100,
            "currency": "EUR",
        }
    )
    return decode(Topic.ORDERS, SourceRecord("orders", 0, 0, None, value, 0), 10_000)


def test_a_record_dated_beyond_the_clock_skew_sorts_first_and_cannot_block_its_partition() -> None:
    """It is dead-lettered when applied; held by its event time it would wait
    for a time no partition reaches, with every later record behind it."""
    now = 1_800_000_000_000
    assert merge_time(order_at(now + 11 * MIN), now, 10 * MIN) == -1
    assert merge_time(order_at(now + 5 * MIN), now, 10 * MIN) == now  # fast clock: sorts at now
    assert merge_time(order_at(now - MIN), now, 10 * MIN) == now - MIN
    unreadable = decode(Topic.ORDERS, SourceRecord("orders", 0, 0, None, b"{", 0), 10_000)
    assert merge_time(unreadable, now, 10 * MIN) == -1
    m = merger({("orders", 1): 99})  # a partition still behind
    m.add([held("orders", 1, 0, 10)])
    m.take_ready(10)
    future = held("payouts", 0, 0, 0)
    future.at_ms = merge_time(order_at(now + 365 * 24 * 60 * MIN), now, 10 * MIN)
    m.add([future, held("payouts", 0, 1, 11)])
    assert [h.record.offset for h in m.take_ready(10)] == [0, 1]


def test_time_spent_applying_is_not_a_stall() -> None:
    """A batch retried through a 90 s Redis outage: no agent could hand over
    records meanwhile, so the lagging partition has not stalled."""
    clock = Clock()
    m = merger({("orders", 0): 99}, clock)
    m.add([held("orders", 0, 0, 100)])
    m.take_ready(10)
    m.add([held("payouts", 0, 0, 500)])
    clock.now = 90.0
    m.excuse(90.0)
    assert m.take_ready(10) == [] and m.stalled == frozenset()
    clock.now = 90.0 + STALL_S + 1
    out = m.take_ready(10)
    assert order_of(out) == [("payouts", 500)] and out[0].incomplete == frozenset({"orders"})


def test_frontiers_tell_other_workers_how_far_each_partition_is_complete() -> None:
    clock = Clock()
    ends = {("orders", 0): 99, ("orders", 1): 99, ("payouts", 0): 0}
    m = merger(ends, clock, grace_s=2.0)
    m.add([held("payouts", 0, 0, 40)])
    clock.now = 3.0
    m.add([held("orders", 0, 0, 100), held("orders", 1, 0, 50)])
    assert order_of(m.take_ready(10)) == [("payouts", 40), ("orders", 50)]
    owned = [("orders", 0), ("orders", 1), ("payouts", 0), ("refunds", 0)]
    assert m.frontiers(owned) == {
        ("orders", 0): Frontier(100 * MIN),  # the head of what is held
        ("orders", 1): Frontier(50 * MIN),  # released so far, more in Kafka
        ("payouts", 0): Frontier(UNBOUNDED),  # caught up
        ("refunds", 0): Frontier(UNBOUNDED),  # nothing to wait for
    }
    ends[("payouts", 0)] = 1
    m.add([held("payouts", 0, 1, 45)])  # the last one: caught up, but just delivered
    assert order_of(m.take_ready(10)) == [("payouts", 45)]
    assert m.frontiers(owned)[("payouts", 0)] == Frontier(45 * MIN)  # more may be in flight
    clock.now = 6.0
    assert m.frontiers(owned)[("payouts", 0)] == Frontier(UNBOUNDED)


def test_a_stalled_partition_is_published_as_stalled() -> None:
    clock = Clock()
    m = merger({("orders", 0): 99, ("payouts", 0): 99}, clock)
    m.add([held("orders", 0, 0, 10)])
    assert order_of(m.take_ready(10)) == []  # payouts/0 delivered nothing yet
    clock.now = STALL_S + 1
    assert order_of(m.take_ready(10)) == [("orders", 10)]
    assert m.frontiers([("payouts", 0)]) == {("payouts", 0): Frontier(UNKNOWN, stalled=True)}


def test_another_workers_frontier_bounds_the_merge() -> None:
    m = merger({})
    m.remote = {("orders", 3): Frontier(100 * MIN)}  # owned elsewhere, complete to minute 100
    m.add([held("payouts", 0, 0, 90), held("payouts", 0, 1, 300)])
    assert order_of(m.take_ready(10)) == [("payouts", 90)]
    m.remote = {("orders", 3): Frontier(400 * MIN)}
    out = m.take_ready(10)
    assert order_of(out) == [("payouts", 300)] and not out[0].incomplete


def test_a_remote_stalled_partition_degrades_instead_of_holding() -> None:
    m = merger({})
    m.remote = {("orders", 3): Frontier(100 * MIN, stalled=True)}
    m.add([held("payouts", 0, 0, 90), held("payouts", 0, 1, 300)])
    first, second = m.take_ready(10)
    assert not first.incomplete  # within the slack of where the stalled partition got
    assert second.incomplete == frozenset({"orders"})
    assert m.stalled == frozenset()  # its owner reports it, not this worker


def test_frontier_entries_round_trip_and_bad_ones_are_skipped() -> None:
    mine = {("orders", 0): Frontier(5), ("payouts", 2): Frontier(-7, stalled=True)}
    raw = {k.encode(): v.encode() for k, v in encode_entries(mine, 1234).items()}
    raw[b"refunds:1"] = b"garbage"
    assert decode_entries(raw) == {
        ("orders", 0): (Frontier(5), 1234),
        ("payouts", 2): (Frontier(-7, stalled=True), 1234),
    }


class FakeHash:
    """The one Redis hash the exchange uses (HSET + HGETALL in a pipeline)."""

    def __init__(self) -> None:
        self.fields: dict[bytes, bytes] = {}

    def pipeline(self, transaction: bool) -> FakeHash:
        self.ops: list[tuple[str, dict[str, str]]] = []
        return self

    def hset(self, key: str, mapping: dict[str, str]) -> None:
        self.ops.append(("hset", mapping))

    def hgetall(self, key: str) -> None:
        self.ops.append(("hgetall", {}))

    async def execute(self) -> list[object]:
        out: list[object] = []
        for op, mapping in self.ops:
            if op == "hset":
                self.fields.update({k.encode(): v.encode() for k, v in mapping.items()})
                out.append(len(mapping))
            else:
                out.append(dict(self.fields))
        return out


async def test_the_exchange_bounds_by_fresh_entries_of_other_owners_and_own_inputs() -> None:
    shared = FakeHash()
    a, b = merger({}), merger({})
    ex_a = FrontierExchange(shared, "ns", "g", ["orders", "payouts"], a, fresh_s=60)
    ex_b = FrontierExchange(shared, "ns", "g", ["orders", "payouts"], b, fresh_s=60)
    b.add([held("orders", 1, 0, 30)])
    shared.fields[b"orders-old-deploy:0"] = b"5:100000:0"  # another topic: bounds nothing
    await ex_b.share([("orders", 1)], now_ms=100_000)
    await ex_a.share([("orders", 0)], now_ms=100_000)
    assert a.remote == {("orders", 1): Frontier(30 * MIN)}
    await ex_a.share([("orders", 0)], now_ms=100_000 + 60_000)  # b stopped writing
    assert a.remote == {}
