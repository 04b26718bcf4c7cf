"""The payout book on either backend (detectors.paid_out): a refund is of a
paid-out order when a payout of its merchant came after the order and at or
before the refund; answers depend only on what lies at or before the refund
and within the retain time, so a retried batch answers the same; merchants
never see each other's orders or payouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from detectors.paid_out import RETAIN_MS, EntryKind, LedgerEntry, PaidOutAnswer
from stream.store.payouts import PayoutBook
from tests.store_cases.backends import Stores

T = 1_790_000_000_000
H = 3_600_000


def order(ref: str, at: int, merchant: str = "m1") -> LedgerEntry:
    return LedgerEntry(EntryKind.ORDER, merchant, ref, at)


def payout(ref: str, at: int, merchant: str = "m1") -> LedgerEntry:
    return LedgerEntry(EntryKind.PAYOUT, merchant, ref, at)


def refund(ref: str, at: int, merchant: str = "m1") -> LedgerEntry:
    return LedgerEntry(EntryKind.REFUND, merchant, ref, at)


class PayoutBookCases:
    @pytest.fixture
    async def book(self, stores: Stores) -> AsyncIterator[PayoutBook]:
        async with stores.scratch(stores.settings()) as store:
            yield store.payout_book()

    async def test_a_refund_after_the_payout_that_covered_its_order(self, book: PayoutBook) -> None:
        got = await book.record(
            [
                order("o1", T),
                refund("o1", T + H),  # before any payout
                payout("p1", T + 3 * H),
                refund("o1", T + 2 * H),  # an earlier refund, recorded late: the payout is after it
                refund("o1", T + 30 * H),
                order("o2", T + 31 * H),
                refund("o2", T + 32 * H),  # ordered after the last payout
                refund("o9", T + 32 * H),  # an order the book never saw
            ]
        )
        assert got == [
            None,
            PaidOutAnswer(T, None),
            None,
            PaidOutAnswer(T, None),
            PaidOutAnswer(T, T + 3 * H),
            None,
            PaidOutAnswer(T + 31 * H, T + 3 * H),
            PaidOutAnswer(None, T + 3 * H),
        ]
        assert [a.paid_out for a in got if a is not None] == [False, False, True, False, False]

    async def test_a_retried_batch_answers_the_same(self, book: PayoutBook) -> None:
        batch = [order("o1", T), payout("p1", T + H), refund("o1", T + 2 * H)]
        first = await book.record(batch)
        # A different time for a known id (a retried batch re-decoded) keeps the first.
        again = await book.record([order("o1", T + 5 * H), *batch[1:]])
        assert first == again == [None, None, PaidOutAnswer(T, T + H)]

    async def test_merchants_keep_their_own_books(self, book: PayoutBook) -> None:
        got = await book.record(
            [
                order("o1", T, "m1"),
                order("o1", T, "m2"),  # the same order id at another merchant
                payout("p1", T + H, "m2"),
                refund("o1", T + 2 * H, "m1"),
                refund("o1", T + 2 * H, "m2"),
            ]
        )
        assert got[3:] == [PaidOutAnswer(T, None), PaidOutAnswer(T, T + H)]

    async def test_what_lies_beyond_the_retain_time_is_not_an_answer(
        self, book: PayoutBook
    ) -> None:
        late = T + RETAIN_MS + 5 * H
        got = await book.record(
            [order("o1", T), payout("p1", T + H), order("o2", late - H), refund("o1", late)]
        )
        assert got[-1] == PaidOutAnswer(None, None)
        # Within the retain time of its own refund, an old payout still answers.
        got = await book.record([refund("o2", late + H)])
        assert got == [PaidOutAnswer(late - H, None)]

    async def test_batches_are_answered_in_the_order_they_were_sent(self, book: PayoutBook) -> None:
        first = asyncio.create_task(book.record([order("o1", T), payout("p1", T + H)]))
        second = asyncio.create_task(book.record([refund("o1", T + 2 * H)]))
        assert (await first, await second) == ([None, None], [PaidOutAnswer(T, T + H)])
