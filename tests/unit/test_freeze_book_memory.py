"""The book of active freezes on the in-memory backend (the same cases run on
Redis in tests/integration/test_freeze_book_redis.py)."""

from __future__ import annotations

from tests.store_cases.freezes import FreezeBookCases


class TestFreezeBook(FreezeBookCases):
    pass
