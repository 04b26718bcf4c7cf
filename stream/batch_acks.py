"""Which input offset may be committed, when records are delivered and acked
in batches (stream.batch_delivery).

faust decides what to commit from the list of acked offsets alone: the
first run of consecutive acked offsets after the committed one, with the
holes Kafka leaves (transaction markers, compaction) filled in as "gaps".
Two weaknesses follow (faust issue #606): its check lets one unacked head
offset be passed (`min(acked) - committed > 1`), and with no committed
offset yet (a group's first commit) any acked run is committed, whatever
lies unacked below it.

This book records instead what was handed out and is not finished: every
record the drain loop delivers is *pending* until it is acked. The offset
to commit (the next record to read) is the oldest pending offset, or one
past the highest acked offset when nothing is pending: it never passes a
record that was handed out and not acked (upstream PR #707's cap), whatever
order acks arrive in, and holes need no bookkeeping at all, because only
delivered records can be pending.

A record given up (a stop, a rebalance, a revoked partition) is simply never
acked: it stays pending, so nothing at or past it is committed, and the
partition's next reader gets it again. Pending entries end three ways: an
ack; a seek back to the committed offset (after a rebalance: every pending
record at or past it is delivered again, so only those an agent still works
on stay pending); the partition being revoked. Records fetched but not handed
out (a rebalance began mid-batch) are registered as pending too, so the
commit stops below them until the seek.

Pure bookkeeping, free of faust: (topic, partition) keys are opaque.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

__all__ = ["AckBook"]


class _Partition:
    __slots__ = ("high", "pending")

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.high: int | None = None  # highest offset acked while pending


class AckBook:
    """Pending and acked input offsets per partition (one event loop: no lock)."""

    def __init__(self) -> None:
        self._parts: dict[Hashable, _Partition] = {}

    def delivered(self, tp: Hashable, offsets: Iterable[int]) -> None:
        """Records about to be handed to agents: pending until acked."""
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        part.pending.update(offsets)

    def dropped(self, tp: Hashable, offset: int) -> None:
        """A fetched record (and those after it) not handed out: commits stay
        below it until the partition is sought back or revoked."""
        self.delivered(tp, (offset,))

    def acked(self, tp: Hashable, offset: int) -> bool:
        """A record is finished. Only a pending record counts: an ack from
        before a seek or a revocation is stale (the record was handed out
        again, or belongs to another worker now)."""
        part = self._parts.get(tp)
        if part is None or offset not in part.pending:
            return False
        part.pending.discard(offset)
        if part.high is None or offset > part.high:
            part.high = offset
        return True

    def commit_point(self, tp: Hashable) -> int | None:
        """The offset to commit (the next one to read), or None when nothing
        was acked since the partition was assigned or sought."""
        part = self._parts.get(tp)
        if part is None or part.high is None:
            return None
        if part.pending:
            oldest = min(part.pending)
            return min(oldest, part.high + 1)
        return part.high + 1

    def acked_partitions(self) -> list[Hashable]:
        """Partitions with something to commit (faust's `_acked` keys)."""
        return [tp for tp, part in self._parts.items() if part.high is not None]

    def reseek(self, tp: Hashable, in_flight: Iterable[int]) -> None:
        """The partition reads again from its committed offset: what was
        pending is delivered again, except records an agent still works on
        (`in_flight`), which stay pending. What is acked below the first
        record that was pending stays committable."""
        part = self._parts.get(tp)
        if part is None:
            return
        point = self.commit_point(tp)
        part.high = None if point is None else point - 1
        part.pending = set(in_flight)

    def forget(self, tp: Hashable) -> None:
        """The partition was revoked: its records are the next owner's."""
        self._parts.pop(tp, None)

    def pending(self, tp: Hashable) -> int:
        part = self._parts.get(tp)
        return 0 if part is None else len(part.pending)
