"""The book of active freezes on a real redis-server (freeze_book.lua): the
cases shared with the in-memory twin, and a script Redis forgot."""

from __future__ import annotations

import pytest

from stream.store.freezes import Registration
from stream.store.redis_freezes import RedisFreezeBook
from tests.integration.services import Services
from tests.store_cases.backends import Stores, scratch_freeze_book
from tests.store_cases.freezes import FreezeBookCases, freeze

pytestmark = pytest.mark.integration


class TestFreezeBook(FreezeBookCases):
    """The backends' shared semantics, on Redis."""


async def test_a_flushed_script_cache_is_reloaded(services: Services, stores: Stores) -> None:
    async with scratch_freeze_book(stores) as book:
        assert isinstance(book, RedisFreezeBook)
        assert await book.register([freeze(1)]) == [Registration.NEW]
        await book._client.script_flush()
        assert await book.register([freeze(1), freeze(2)]) == [
            Registration.ACTIVE,
            Registration.NEW,
        ]
