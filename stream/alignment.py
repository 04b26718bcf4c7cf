"""Applying the input topics in event-time order inside one worker.

Each input topic has its own agent, and Kafka orders records only within a
partition. In real time the topics move together, but with a backlog (a
worker restarting after an outage, a deploy with lag, a new consumer
group) the agent of a small topic (payouts) runs days of event time ahead of
a big one (orders). Rules that read one topic's aggregate when another
topic's event arrives then judge on half the facts: a payout checked
against earnings whose orders are not counted yet looks like a payout
beyond earnings, and a legitimate merchant gets its funds frozen.

So agents hand their records to one shared merger instead of applying them.
It releases the records of every topic and partition this worker owns
merged by event time, and holds a record while some owned partition that
still has undelivered records in Kafka lags behind it by more than the
slack: Kafka Streams' "lowest timestamp first", across all of the worker's
inputs. The hold has no wall-clock limit: a record waits as long as the
partitions it must wait for make progress, however long a backlog takes.
A partition that looks caught up but delivered records within the last
`grace_s` also bounds the merge at what it delivered: the high watermark of
its last fetch may predate records produced since (history replayed into a
live topic arrives faster than fetches refresh it). In real time this holds
nothing: every active partition's event time is close to now.

Memory stays bounded by backpressure, not by giving up: past `max_held`
records the partitions that are ahead (those with records held) are paused
in the consumer, so only the lagging ones are fetched, and resumed once
they have drained. Agents never block on each other (faust delivers every
topic through one dispatcher, so a blocked agent would stall the lagging
topic too); held records stay unacknowledged, so a crash redelivers them.

Only a partition that makes no progress at all for `stall_s` (a stuck
broker), or that is known to be stuck (a batch the worker cannot read),
stops bounding the merge. The
records released past it are marked `incomplete` with its topic: decisions
reading aggregates that topic feeds are degraded (they may alert, marked,
but never freeze).

Users, devices and cards span partitions, so the merge must reach across the
worker processes of a consumer group too: two workers catching up a backlog
at different speeds would otherwise count one user's events in another order
than the backtest. Each worker publishes how far each partition it owns is
complete in event time (`frontiers`), and every worker's merge is bounded by
the others' (`remote`) as by its own lagging partitions; a remote partition
marked stalled degrades decisions here as it does where it is owned.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stream.codec import DeadLetter, Decoded, Incoming, SourceRecord

__all__ = [
    "ACTIVE_GRACE_S",
    "UNBOUNDED",
    "UNKNOWN",
    "EventTimeMerger",
    "Flow",
    "Frontier",
    "Held",
    "LaggingProbe",
    "Part",
    "merge_time",
]

Part = tuple[str, int]  # (Kafka topic name, partition)
# The owned (topic, partition)s with records in Kafka not yet handed to the merger.
LaggingProbe = Callable[[], Iterable[Part]]
UNKNOWN = -(2**62)  # a co-partition with a backlog that has delivered nothing yet
UNBOUNDED = 2**62
# How long a partition that just delivered may still have records in flight.
ACTIVE_GRACE_S = 2.0


@dataclass(slots=True)
class Held:
    at_ms: int  # event time; -1 for an undecodable record (bound for the DLQ: it goes first)
    item: Incoming  # decoded when it arrived; the pipeline judges it as it is
    event: Any  # the faust event: acked once applied
    since: float  # monotonic time the merger received it
    # Input topics (Kafka names) with a stalled partition still behind this
    # record when it was released: what it is judged on may be incomplete.
    incomplete: frozenset[str] = field(default_factory=frozenset)

    @property
    def record(self) -> SourceRecord:
        return self.item.record


def merge_time(item: Decoded | DeadLetter, now_ms: int, future_skew_ms: int) -> int:
    """Where a record sorts in the merge. An undecodable record, or one dated
    beyond the allowed clock skew (the pipeline dead-letters it), sorts first:
    held, it would wait for an event time no partition reaches, and every
    later record of its partition with it. Within the skew, a record dated
    ahead of now sorts at now, so a producer whose clock runs fast delays
    nothing."""
    if not isinstance(item, Decoded):
        return -1
    at = item.event.occurred_at_ms
    if at > now_ms + future_skew_ms:
        return -1
    return min(at, now_ms)


@dataclass(frozen=True, slots=True)
class Frontier:
    """How far one partition is complete in event time, as its owner sees
    it: every record before `at_ms` is applied or being applied. A stalled
    partition does not hold other workers back; their records released past
    it are marked incomplete."""

    at_ms: int
    stalled: bool = False


@dataclass(frozen=True, slots=True)
class Flow:
    """Partitions to pause and to resume in the consumer, now."""

    pause: tuple[Part, ...] = ()
    resume: tuple[Part, ...] = ()


class EventTimeMerger:
    """Shared by the agents of one worker process."""

    def __init__(
        self,
        topics: Iterable[str],
        slack_ms: int,
        stall_s: float,
        max_held: int,
        lagging: LaggingProbe = lambda: (),
        clock: Callable[[], float] = time.monotonic,
        grace_s: float = ACTIVE_GRACE_S,
        stuck: LaggingProbe = lambda: (),
    ) -> None:
        self._topics = list(topics)
        self._slack_ms = slack_ms
        self._stall_s = stall_s
        self._max_held = max_held
        self._lagging = lagging
        self._stuck = stuck
        self._clock = clock
        self._grace_s = grace_s
        self._queues: dict[Part, deque[Held]] = {}
        self._delivered: dict[Part, int] = {}  # last offset handed to the merger
        self._released: dict[Part, int] = {}  # latest event time released
        self._progress: dict[Part, float] = {}  # when a lagging partition last moved
        self._last_add: dict[Part, float] = {}  # when a partition last delivered
        self._paused: set[Part] = set()
        self._stuck_now: set[Part] = set()  # known to be stuck (an unreadable batch)
        self.stalled: frozenset[Part] = frozenset()  # as of the last take_ready
        # Partitions other worker processes own, with their published frontiers.
        self.remote: dict[Part, Frontier] = {}
        self.pauses = 0  # partitions paused by backpressure, cumulative

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    @property
    def paused(self) -> frozenset[Part]:
        return frozenset(self._paused)

    def oldest_since(self) -> float | None:
        """When the longest-held record arrived (None: nothing held)."""
        return min((q[0].since for q in self._queues.values() if q), default=None)

    def add(self, items: Iterable[Held]) -> None:
        now = self._clock()
        for h in items:
            part = (h.record.topic, h.record.partition)
            self._queues.setdefault(part, deque()).append(h)
            self._delivered[part] = h.record.offset
            self._progress[part] = now
            self._last_add[part] = now

    def take_ready(self, limit: int) -> list[Held]:
        """Up to `limit` records that may be applied now, in event-time order
        across every partition of every topic (within a (topic, partition)
        always in offset order)."""
        lagging, now = set(self._lagging()), self._clock()
        self._stuck_now = set(self._stuck())
        bound, stalled = self._bounds(lagging, now)
        heads = [(q[0].at_ms, part) for part, q in self._queues.items() if q]
        heapq.heapify(heads)
        out: list[Held] = []
        while heads and len(out) < limit:
            at_ms, part = heads[0]
            if at_ms > bound + self._slack_ms:
                break  # the earliest record waits, so does everything after it
            queue = self._queues[part]
            held = queue.popleft()
            behind = frozenset(p[0] for p, t in stalled.items() if at_ms > t + self._slack_ms)
            if behind:
                held.incomplete = behind
            out.append(held)
            self._released[part] = max(self._released.get(part, UNKNOWN), at_ms)
            if queue:
                heapq.heapreplace(heads, (queue[0].at_ms, part))
            else:
                heapq.heappop(heads)
                del self._queues[part]
                bound, stalled = self._bounds(lagging, now)  # drained: it may bound now
        # Own partitions only: a remote stall is its owner's to report.
        self.stalled = frozenset(p for p in stalled if p not in self.remote)
        return out

    def _bounds(self, lagging: set[Part], now: float) -> tuple[int, dict[Part, int]]:
        """How far event time may go, and the stalled partitions (with how far
        each got). A bound is a (topic, partition) that has nothing queued but
        still has records in Kafka (a queued one takes part in the merge
        through its head instead); one that has not moved for `stall_s`
        stops bounding, so a stuck partition cannot stop the others."""
        bound = UNBOUNDED
        stalled: dict[Part, int] = {}
        for part in lagging:
            if self._queues.get(part):
                continue
            if part in self._paused:
                self._progress[part] = now  # not fetched on purpose: not a stall
            since = self._progress.setdefault(part, now)
            released = self._released.get(part, UNKNOWN)
            if part in self._stuck_now or now - since >= self._stall_s:
                stalled[part] = released
            else:
                bound = min(bound, released)
        for part in list(self._progress):
            if part not in lagging and not self._queues.get(part):
                del self._progress[part]  # caught up: its next stall clock starts afresh
        bound = self._remote_bound(bound, stalled)
        for part, at in self._last_add.items():
            if now - at < self._grace_s and part not in lagging and not self._queues.get(part):
                # Caught up as far as the last fetch knew, but still delivering:
                # its next records may be in flight (a fetch's high watermark is
                # older than the records that just reached other partitions).
                bound = min(bound, self._released.get(part, UNKNOWN))
        return bound, stalled

    def _remote_bound(self, bound: int, stalled: dict[Part, int]) -> int:
        """Other workers' partitions bound the merge as lagging ones here do;
        a stalled one goes into `stalled` instead."""
        for part, frontier in self.remote.items():
            if frontier.stalled:
                stalled[part] = frontier.at_ms
            else:
                bound = min(bound, frontier.at_ms)
        return bound

    def flow(self) -> Flow:
        """Backpressure: past `max_held`, pause every partition that has
        records held (it is ahead; the partitions the merge waits for have
        none, so they keep being fetched). A paused partition resumes once
        its records are gone or the total is back under half the limit.
        Every paused partition is named each time: the consumer's own flow
        control may have resumed one meanwhile."""
        held = len(self)
        if held > self._max_held:
            ahead = {p for p, q in self._queues.items() if q}
            self.pauses += len(ahead - self._paused)
            self._paused |= ahead
        resume = [p for p in self._paused if not self._queues.get(p) or held <= self._max_held // 2]
        now = self._clock()
        for part in resume:
            self._paused.discard(part)
            self._progress[part] = now  # paused on purpose: not a stall
        return Flow(tuple(sorted(self._paused)), tuple(sorted(resume)))

    def frontiers(self, owned: Iterable[Part]) -> dict[Part, Frontier]:
        """How far each owned partition is complete, for the other workers of
        the group: the head of what is held; what was released while records
        are still in Kafka (or may be in flight); unbounded once caught up.
        A stalled partition is published as such, with how far it got."""
        lagging, now = set(self._lagging()), self._clock()
        out: dict[Part, Frontier] = {}
        for part in owned:
            queue = self._queues.get(part)
            recent = now - self._last_add.get(part, float("-inf")) < self._grace_s
            if queue:
                out[part] = Frontier(queue[0].at_ms)
            elif part in self.stalled:
                out[part] = Frontier(self._released.get(part, UNKNOWN), stalled=True)
            elif part in lagging or recent:
                out[part] = Frontier(self._released.get(part, UNKNOWN))
            else:
                out[part] = Frontier(UNBOUNDED)
        return out

    def excuse(self, seconds: float) -> None:
        """The worker spent `seconds` applying records, while no agent could
        hand new ones over (a slow Redis, a retried batch): that time is not
        the partitions' stall, nor time their records had to arrive."""
        for clocks in (self._progress, self._last_add):
            for part in clocks:
                clocks[part] += seconds

    def delivered(self, part: Part) -> int | None:
        """The last offset of `part` handed to the merger (None: nothing yet)."""
        return self._delivered.get(part)

    def drop(self, parts: Iterable[Part]) -> list[Held]:
        """Forget partitions this worker no longer owns (their new owner starts
        from the committed offset); returns what was held, still unacked."""
        dropped: list[Held] = []
        for part in parts:
            dropped += self._queues.pop(part, deque())
            self._delivered.pop(part, None)
            self._released.pop(part, None)
            self._progress.pop(part, None)
            self._last_add.pop(part, None)
            self._paused.discard(part)
        return dropped

    def drain(self) -> list[Held]:
        """Everything held (the worker is stopping)."""
        return self.drop(list(self._queues))
