"""The payout book on the in-memory backend (the same cases run on Redis in
tests/integration/test_payout_book_redis.py)."""

from __future__ import annotations

from tests.store_cases.payouts import PayoutBookCases


class TestPayoutBook(PayoutBookCases):
    pass
