"""Event-time merging of co-partitioned input topics (stream.alignment)."""

from __future__ import annotations

from detectors.events import Topic
from stream.alignment import EventTimeMerger, Held
from stream.codec import DeadLetter, SourceRecord

MIN = 60_000
TOPICS = {"orders": Topic.ORDERS, "payouts": Topic.PAYOUTS, "refunds": Topic.REFUNDS}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def held(topic: str, partition: int, offset: int, at_min: int, since: float = 0.0) -> Held:
    record = SourceRecord(topic, partition, offset, None, b"{}", 0)
    unused = DeadLetter(record, "empty_value", "not decoded in these tests")
    return Held(at_min * MIN, TOPICS[topic], record, unused, None, since)


def merger(kafka_ends: dict[tuple[str, int], int], clock: Clock | None = None) -> EventTimeMerger:
    """`kafka_ends`: (topic, partition) → offset of the last record in Kafka."""

    def lagging() -> list[tuple[str, int]]:
        out = []
        for part, end in kafka_ends.items():
            delivered = m.delivered(part)
            if delivered is None or delivered < end:
                out.append(part)
        return out

    m = EventTimeMerger(TOPICS, MIN, 30.0, lagging, clock or Clock())
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


def test_a_record_is_held_at_most_max_hold() -> None:
    clock = Clock()
    m = merger({("orders", 0): 99}, clock)
    m.add([held("payouts", 0, 0, 500, since=0.0)])
    clock.now = 29.0
    assert m.take_ready(10) == []
    clock.now = 31.0
    assert order_of(m.take_ready(10)) == [("payouts", 500)] and m.forced == 1


def test_records_of_one_partition_keep_their_offset_order() -> None:
    """Event time may go backwards inside a partition; offsets still rule."""
    m = merger({})
    m.add([held("orders", 0, 0, 50), held("orders", 0, 1, 10), held("payouts", 0, 0, 20)])
    out = m.take_ready(10)
    orders = [h.record.offset for h in out if h.record.topic == "orders"]
    assert orders == [0, 1]


def test_dropping_revoked_partitions_returns_what_was_held() -> None:
    m = merger({("orders", 0): 99})
    m.add([held("payouts", 0, 0, 500), held("payouts", 1, 0, 500)])
    dropped = m.drop([("payouts", 0)])
    assert [h.record.partition for h in dropped] == [0] and len(m) == 1
    assert len(m.drain()) == 1 and len(m) == 0


def test_limit_bounds_a_slice() -> None:
    m = merger({})
    m.add([held("orders", 0, i, i) for i in range(10)])
    assert len(m.take_ready(4)) == 4 and len(m) == 6


def test_overflow_releases_the_earliest_held_records_first() -> None:
    m = merger({("orders", 0): 99})  # orders lags: everything else waits
    m.add([held("payouts", 0, i, 500 + i) for i in range(3)])
    m.add([held("refunds", 1, 0, 400)])
    assert m.take_ready(10) == []
    out = m.take_oldest(2)
    assert order_of(out) == [("refunds", 400), ("payouts", 500)] and m.forced == 2
    assert len(m) == 2
