"""The book of each merchant's order and payout times (detectors.paid_out),
behind one Protocol with two backends: Redis (payout_book.lua, through
stream.store.redis_payouts) and this module's in-memory twin, which answers
exactly as the script does. A shared store case runs both."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from typing import Protocol

from detectors.paid_out import RETAIN_MS, EntryKind, LedgerEntry, PaidOutAnswer

__all__ = ["MemoryPayoutBook", "PayoutBook"]


class PayoutBook(Protocol):
    async def record(
        self, entries: Sequence[LedgerEntry], after: asyncio.Event | None = None
    ) -> list[PaidOutAnswer | None]:
        """Write the orders and payouts and answer the refunds, in order;
        the result aligns with `entries` (None where it is not a refund).
        Calls reach the store in the order they were made; with `after`, a
        call first waits for that event (see EventStore.apply). Idempotent:
        an order or payout recorded twice keeps its first time."""
        ...


class MemoryPayoutBook:
    def __init__(self, retain_ms: int = RETAIN_MS) -> None:
        self._retain = retain_ms
        self._orders: dict[str, dict[str, int]] = {}
        self._payouts: dict[str, dict[str, int]] = {}
        self._payout_times: dict[str, list[int]] = {}
        self._in_order = asyncio.Lock()

    async def record(
        self, entries: Sequence[LedgerEntry], after: asyncio.Event | None = None
    ) -> list[PaidOutAnswer | None]:
        if after is not None:
            await after.wait()
        async with self._in_order:
            return [self._one(e) for e in entries]

    def _one(self, e: LedgerEntry) -> PaidOutAnswer | None:
        if e.kind is EntryKind.ORDER:
            self._orders.setdefault(e.merchant_id, {}).setdefault(e.ref, e.at_ms)
            return None
        if e.kind is EntryKind.PAYOUT:
            known = self._payouts.setdefault(e.merchant_id, {})
            if e.ref not in known:
                known[e.ref] = e.at_ms
                bisect.insort(self._payout_times.setdefault(e.merchant_id, []), e.at_ms)
            return None
        horizon = e.at_ms - self._retain
        order_at = self._orders.get(e.merchant_id, {}).get(e.ref)
        if order_at is not None and order_at < horizon:
            order_at = None
        times = self._payout_times.get(e.merchant_id, [])
        i = bisect.bisect_right(times, e.at_ms)
        payout_at = times[i - 1] if i and times[i - 1] >= horizon else None
        return PaidOutAnswer(order_at, payout_at)
