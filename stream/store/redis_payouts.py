"""Redis backend of the payout book (stream.store.payouts): payout_book.lua,
one call per slot (a merchant's hash tag), through the RedisStore's script
runner (its error mapping, script reload and latency observer)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any

import orjson

from detectors.paid_out import RETAIN_MS, EntryKind, LedgerEntry, PaidOutAnswer
from detectors.rules_entities import EntityType
from stream.store import keys

__all__ = ["PAYOUT_SCRIPTS", "RedisPayoutBook"]

# (slot → (keys, args)) → (slot → reply): the store's one-call-per-slot runner.
EachSlot = Callable[[str, dict[int, tuple[list[str], list[Any]]]], Awaitable[dict[int, Any]]]
MERCHANT = (EntityType.MERCHANT,)
# Keys outlive their newest member by a day: a quiet merchant's book is kept
# as long as its entries are read.
TTL_MS = RETAIN_MS + 86_400_000
REFRESH_MS = 43_200_000  # TTL and trimming at most twice a day of event time per key

PAYOUT_SCRIPTS = {
    "payout_book": resources.files("stream.store")
    .joinpath("lua", "payout_book.lua")
    .read_text(encoding="utf-8")
}


class _Call:
    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.flat: list[Any] = []
        self.refunds: list[int] = []  # entry positions answered by this call, in order

    def kidx(self, key: str) -> int:
        idx = self.keys.get(key)
        if idx is None:
            idx = self.keys[key] = len(self.keys) + 1
        return idx


class RedisPayoutBook:
    def __init__(
        self,
        namespace: str,
        hasher: keys.KeyHasher,
        each_slot: EachSlot,
        slot_of: Callable[[str], int],
    ) -> None:
        self._ns, self._hasher = namespace, hasher
        self._each_slot, self._slot_of = each_slot, slot_of
        self._in_order = asyncio.Lock()

    async def record(
        self, entries: Sequence[LedgerEntry], after: asyncio.Event | None = None
    ) -> list[PaidOutAnswer | None]:
        calls = self._encode(entries)  # before the first await, as EventStore.apply
        if after is not None:
            await after.wait()
        async with self._in_order:
            replies = await self._each_slot(
                "payout_book",
                {
                    slot: (list(c.keys), [orjson.dumps(c.flat), RETAIN_MS, TTL_MS, REFRESH_MS])
                    for slot, c in calls.items()
                },
            )
        out: list[PaidOutAnswer | None] = [None] * len(entries)
        for slot, call in calls.items():
            reply = replies[slot]
            for n, pos in enumerate(call.refunds):
                order_at, payout_at = int(reply[2 * n]), int(reply[2 * n + 1])
                out[pos] = PaidOutAnswer(
                    order_at if order_at >= 0 else None, payout_at if payout_at >= 0 else None
                )
        return out

    def _encode(self, entries: Sequence[LedgerEntry]) -> dict[int, _Call]:
        calls: dict[int, _Call] = {}
        member = self._hasher.member
        for pos, e in enumerate(entries):
            tag = self._hasher.tag(MERCHANT, (e.merchant_id,))
            slot = self._slot_of(tag)
            call = calls.get(slot)
            if call is None:
                call = calls[slot] = _Call()
            # Only the keys an entry uses: most batches are orders alone.
            if e.kind is EntryKind.PAYOUT:
                key = call.kidx(keys.merchant_payouts(self._ns, tag))
            else:
                key = call.kidx(keys.merchant_orders(self._ns, tag))
            payouts = 0
            if e.kind is EntryKind.REFUND:
                call.refunds.append(pos)
                payouts = call.kidx(keys.merchant_payouts(self._ns, tag))
            call.flat += (int(e.kind), key, member(e.ref), e.at_ms, payouts)
        return calls
