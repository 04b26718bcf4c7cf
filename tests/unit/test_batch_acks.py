"""What batch delivery may commit (stream.batch_acks): never past a record
handed out and not acked, whatever order acks arrive in."""

from __future__ import annotations

from stream.batch_acks import AckBook

TP = ("orders", 0)


def book_with(delivered: range, acked: list[int]) -> AckBook:
    book = AckBook()
    book.delivered(TP, delivered)
    for offset in acked:
        assert book.acked(TP, offset)
    return book


def test_in_order_acks_commit_one_past_the_last() -> None:
    assert book_with(range(10, 20), list(range(10, 20))).commit_point(TP) == 20


def test_nothing_acked_commits_nothing() -> None:
    assert book_with(range(10, 20), []).commit_point(TP) is None
    assert AckBook().commit_point(TP) is None


def test_an_unacked_head_is_never_passed() -> None:
    # faust #606: min(acked) - committed == 1 let faust commit past offset 10.
    assert book_with(range(10, 20), list(range(11, 20))).commit_point(TP) == 10


def test_out_of_order_acks_commit_only_the_contiguous_prefix() -> None:
    book = book_with(range(0, 10), [0, 1, 2, 7, 8, 5])
    assert book.commit_point(TP) == 3
    for offset in (3, 4):
        book.acked(TP, offset)
    assert book.commit_point(TP) == 6
    book.acked(TP, 6)
    assert book.commit_point(TP) == 9
    book.acked(TP, 9)
    assert book.commit_point(TP) == 10


def test_holes_in_the_offsets_need_no_gap_bookkeeping() -> None:
    # Offsets 5 and 6 are transaction markers: never delivered, never pending.
    book = AckBook()
    book.delivered(TP, [0, 1, 2, 3, 4, 7, 8, 9])
    for offset in (0, 1, 2, 3, 4, 7, 8, 9):
        book.acked(TP, offset)
    assert book.commit_point(TP) == 10


def test_a_record_given_up_stays_uncommitted() -> None:
    # 5..9 given up on a stop: never acked, so the commit stops at 5.
    book = book_with(range(0, 10), [0, 1, 2, 3, 4])
    assert book.commit_point(TP) == 5
    assert book.pending(TP) == 5


def test_records_dropped_mid_fetch_hold_the_commit_below_them() -> None:
    book = book_with(range(0, 5), [0, 1, 2, 3, 4])
    book.dropped(TP, 5)  # fetched, never handed out: a rebalance began
    book.delivered(TP, range(9, 12))  # a later fetch, before the seek
    for offset in (9, 10, 11):
        book.acked(TP, offset)
    assert book.commit_point(TP) == 5


def test_a_seek_keeps_what_agents_still_hold_and_what_is_safe() -> None:
    book = book_with(range(0, 10), [0, 1, 2, 8])
    # 3 and 4 are still being applied; 5..7 and 9 were given up.
    book.reseek(TP, in_flight=[3, 4])
    assert book.commit_point(TP) == 3
    assert book.pending(TP) == 2
    book.delivered(TP, range(5, 10))  # read again from the committed offset
    for offset in (3, 4, 5, 6, 7):
        book.acked(TP, offset)
    assert book.commit_point(TP) == 8
    book.acked(TP, 8)
    book.acked(TP, 9)
    assert book.commit_point(TP) == 10


def test_a_seek_with_nothing_acked_commits_nothing() -> None:
    book = book_with(range(0, 10), [])
    book.reseek(TP, in_flight=[])
    assert book.commit_point(TP) is None
    assert book.pending(TP) == 0


def test_acks_of_a_revoked_partition_are_stale() -> None:
    book = book_with(range(0, 10), [0, 1])
    book.forget(TP)
    assert not book.acked(TP, 2)
    assert book.commit_point(TP) is None
    assert book.acked_partitions() == []


def test_an_ack_of_a_record_not_pending_is_ignored() -> None:
    book = book_with(range(0, 3), [0, 1, 2])
    assert not book.acked(TP, 2)  # a second ack (another copy of the record)
    assert not book.acked(TP, 50)  # never delivered
    assert book.commit_point(TP) == 3
    assert book.acked_partitions() == [TP]
