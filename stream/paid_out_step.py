"""Refunds of paid-out orders, marked before a batch's aggregates are applied.

Whether a refund's order was already paid out depends on the merchant's
earlier orders and payouts (detectors.paid_out). The store's payout book
writes the batch's orders and payouts and answers its refunds, in event
order, in the store's turn for the batch (after the batch before it is
applied, with `after`); each refund is then judged, and its aggregates
planned again, with `order_placed_at_ms` and `paid_out_at_ms` set. Only
rule sets that read those fields pay this round trip.
"""

from __future__ import annotations

import asyncio
import dataclasses

from detectors import engine
from detectors.events import Refund, Topic
from detectors.paid_out import LedgerEntry, ledger_entry, with_paid_out
from stream.codec import Decoded
from stream.store.base import EventRequests
from stream.store.payouts import PayoutBook

__all__ = ["Planned", "mark_paid_out"]

# What the pipeline planned for one event: its topic, the record, the requests.
Planned = tuple[Topic, Decoded, list[engine.GroupRequest]]


async def mark_paid_out(
    batch: tuple[list[Decoded], list[Planned], list[EventRequests]],
    book: PayoutBook,
    plan: engine.Plan,
    after: asyncio.Event | None,
) -> None:
    """`batch`: every admitted record in order, and the planned records with
    their store requests (aligned); the refunds among them are replaced in
    place by their marked events."""
    admitted, planned, requests = batch
    entries: list[LedgerEntry] = []
    positions: list[int] = []
    for i, d in enumerate(admitted):
        entry = ledger_entry(d.event)
        if entry is not None:
            entries.append(entry)
            positions.append(i)
    if not entries:
        return
    answers = await book.record(entries, after)
    slot = {id(d): j for j, (_, d, _) in enumerate(planned)}
    for i, answer in zip(positions, answers, strict=True):
        old = admitted[i]
        if answer is None or not isinstance(old.event, Refund):
            continue
        new = dataclasses.replace(old, event=with_paid_out(old.event, answer))
        admitted[i] = new
        j = slot.get(id(old))
        if j is None:
            continue  # nothing is asked of the store for it
        topic = planned[j][0]
        reqs = plan.requests(topic, new.event)
        planned[j] = (topic, new, reqs)
        ev = requests[j]
        requests[j] = EventRequests(ev.event_id, ev.event_ms, reqs, ev.currency)
