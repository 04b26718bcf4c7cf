"""Input lag, and which owned partitions still have records in Kafka that
the event-time merge has not seen (stream.alignment needs both answers).

Lag is exported per topic, in records (high watermark - next offset to
process) and in seconds (age of the last processed record while behind).
A partition whose only unread entries are transaction markers is caught up:
a transactional producer's commit marker is never delivered, so its high
watermark stays one past the last record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import faust

from stream.alignment import Part
from stream.blocked import BlockedPartitions
from stream.metrics import Metrics
from stream.settings import Settings

__all__ = ["LAG_INTERVAL_S", "LagMonitor"]

log = logging.getLogger(__name__)
LAG_INTERVAL_S = 5.0


class LagMonitor:
    """Read by the lag timer (metrics) and by the merger's probes (which
    partitions it must wait for, which are stuck)."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        metrics: Metrics,
        blocked: BlockedPartitions,
        applied: Mapping[Part, tuple[int, int]],
        merge_lock: asyncio.Lock,
        delivered: Callable[[Part], int | None],
    ) -> None:
        """`applied`: (last applied offset, its Kafka timestamp ms) per
        partition (the runner's); `delivered`: the last offset the merger
        received; `merge_lock`: held while the merge applies records."""
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.blocked = blocked
        self._applied = applied
        self._merge_lock = merge_lock
        self._delivered = delivered
        # Partitions whose high watermark is a transaction marker past the last
        # record (value: that high watermark), and what the lag timer last saw.
        self._marker_end: dict[Part, int] = {}
        self._ends: dict[Part, tuple[int, int]] = {}
        # Consumer positions of partitions nothing was applied from yet (lag timer).
        self._positions: dict[tuple[str, int], int] = {}

    async def update(self) -> None:
        """Run every LAG_INTERVAL_S: export the lag of every input topic."""
        consumer = self.app.consumer
        if consumer is None:
            return
        now = time.time()
        records: dict[str, int] = {}
        seconds: dict[str, float] = {}
        inputs = set(self.settings.topics.inputs().values())
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            highwater = consumer.highwater(tp)
            done = self._applied.get((tp.topic, tp.partition))
            if highwater is None or highwater < 0:
                continue
            await self._note_marker_gap(tp, highwater)
            if done:
                next_offset = done[0] + 1
            else:
                next_offset = await consumer.position(tp) or 0
                self._positions[(tp.topic, tp.partition)] = next_offset
            behind = max(highwater - next_offset, 0)
            if self._marker_end.get((tp.topic, tp.partition)) == highwater:
                behind = 0  # only transaction markers are left
            records[tp.topic] = records.get(tp.topic, 0) + behind
            age = now - done[1] / 1000 if behind and done and done[1] > 0 else 0.0
            seconds[tp.topic] = max(seconds.get(tp.topic, 0.0), age)
        for topic in inputs:
            self.metrics.lag_records.labels(topic).set(records.get(topic, 0))
            self.metrics.lag_seconds.labels(topic).set(seconds.get(topic, 0.0))

    async def _note_marker_gap(self, tp: Any, highwater: int) -> None:
        """A partition written by a transactional producer ends with a commit
        marker, which is never delivered: its high watermark stays one past
        the last record. When the fetch position has reached the high
        watermark, faust has handed out nothing the merger lacks, and that
        held for a whole interval with the merge idle, the gap is markers,
        not records: the partition is caught up (else the merge would wait
        for it until it counts as stalled)."""
        consumer = self.app.consumer
        if consumer is None or getattr(self.app, "rebalancing", False):
            return
        key = (tp.topic, tp.partition)
        read_at = getattr(consumer, "_read_offset", {}).get(tp)
        delivered = self._delivered(key)
        if delivered is None:  # since the assignment: faust's read offset is the committed one
            last = read_at - 1 if read_at is not None else None
        elif read_at is not None and read_at > delivered:
            return  # handed to an agent, not yet to the merger
        else:
            last = delivered
        if last is None or highwater <= last + 1 or self._merge_lock.locked():
            self._ends.pop(key, None)
            return
        try:
            position = await consumer.position(tp)
        except Exception as exc:  # revoked meanwhile: decide on the next round
            log.debug("position of %s unavailable: %s", tp, exc)
            return
        if position is not None and position >= highwater:
            if self._ends.get(key) == (last, highwater):
                self._marker_end[key] = highwater
            self._ends[key] = (last, highwater)

    def lagging(self) -> list[tuple[str, int]]:
        """Owned input partitions whose records have not all reached the merger.
        Unknown counts as lagging (a partition not fetched yet after a start
        or a rebalance): holding briefly is safe, racing ahead is not. A stopped
        partition (stream.blocked) is lagging too; the merger treats it as
        stalled at once, so decisions reading its topic are degraded."""
        consumer = self.app.consumer
        if consumer is None:
            return []
        inputs = set(self.settings.topics.inputs().values())
        read = getattr(consumer, "_read_offset", {})  # faust: committed offset after a seek
        out = []
        for tp in consumer.assignment():
            if tp.topic not in inputs:
                continue
            key = (tp.topic, tp.partition)
            delivered = self._delivered(key)
            if delivered is not None:
                next_offset: int | None = delivered + 1
            else:
                # Nothing delivered yet: the committed offset, else the position
                # the lag timer last read (a group without commits).
                next_offset = read.get(tp)
                if next_offset is None:
                    next_offset = self._positions.get((tp.topic, tp.partition))
            highwater = consumer.highwater(tp)
            if highwater is None or next_offset is None:
                out.append((tp.topic, tp.partition))
            elif highwater > next_offset and self._marker_end.get(key) != highwater:
                out.append(key)
        return out

    def stuck(self) -> set[Part]:
        """Partitions stopped at a batch the worker cannot read: stalled now."""
        return set(self.blocked.partitions())

    def forget(self, parts: Iterable[Part]) -> None:
        """Partitions revoked from this worker: their state is the new owner's."""
        for part in parts:
            self._marker_end.pop(part, None)
            self._ends.pop(part, None)
            self._positions.pop(part, None)
