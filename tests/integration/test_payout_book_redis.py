"""The payout book on Redis, standalone and Cluster: payout_book.lua (the
same cases run on the in-memory store in tests/unit/test_payout_book_memory.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stream.store.payouts import PayoutBook
from tests.integration.services import LocalCluster
from tests.integration.test_redis_cluster import new_cluster_store
from tests.store_cases.payouts import PayoutBookCases

pytestmark = pytest.mark.integration


class TestPayoutBook(PayoutBookCases):
    pass


class TestPayoutBookOnACluster(PayoutBookCases):
    """A merchant's two keys share its hash tag: each call runs on one node."""

    @pytest.fixture
    async def book(self, redis_cluster: LocalCluster) -> AsyncIterator[PayoutBook]:
        store = new_cluster_store(redis_cluster)
        await store.start()
        try:
            yield store.payout_book()
        finally:
            await store.drop_namespace()
            await store.close()
