"""The event-time frontiers the workers of one consumer group share.

A worker's merge (stream.alignment) orders only the partitions it owns. A
user's, device's or card's events span partitions, so two workers catching
up a backlog at different speeds would count them in another order than the
backtest, and miss alerts. Each worker therefore writes, for every input
partition it owns, how far that partition is complete in event time, and
bounds its own merge by what the others wrote.

The exchange runs often (the leap each round allows is the merge's slack,
so a backlog advances by about twice the slack per round trip between two
workers) and costs one pipelined HSET + HGETALL on one small hash. An entry
not refreshed within the stall time belongs to a worker gone or stuck: it
stops holding the others back, as a stalled partition does within a worker.
A partition given up in a rebalance keeps its entry until its next owner
overwrites it; until then the others wait for its records, as they should.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from stream.alignment import EventTimeMerger, Frontier, Part
from stream.store import keys

__all__ = ["FrontierExchange", "decode_entries", "encode_entries"]

log = logging.getLogger(__name__)


def encode_entries(mine: dict[Part, Frontier], now_ms: int) -> dict[str, str]:
    return {
        f"{topic}:{partition}": f"{f.at_ms}:{now_ms}:{int(f.stalled)}"
        for (topic, partition), f in mine.items()
    }


def decode_entries(raw: dict[Any, Any]) -> dict[Part, tuple[Frontier, int]]:
    """(topic, partition) → (frontier, when its owner wrote it). Entries that
    do not parse are skipped: they are another version's, or damaged."""
    out: dict[Part, tuple[Frontier, int]] = {}
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        text = value.decode() if isinstance(value, bytes) else str(value)
        topic, _, partition = name.rpartition(":")
        parts = text.split(":")
        try:
            at_ms, written_ms, stalled = int(parts[0]), int(parts[1]), parts[2] == "1"
            out[(topic, int(partition))] = (Frontier(at_ms, stalled), written_ms)
        except (IndexError, ValueError):
            log.warning("ignoring an unreadable frontier entry %r = %r", name, text)
    return out


class FrontierExchange:
    """Writes this worker's frontiers and reads the others' into the merger."""

    def __init__(
        self,
        client: Any,
        namespace: str,
        group: str,
        inputs: Iterable[str],
        merger: EventTimeMerger,
        fresh_s: float,
    ) -> None:
        self._client = client
        self._key = keys.frontiers(namespace, group)
        # Entries of other topics (renamed inputs, another deployment's) bound nothing.
        self._inputs = frozenset(inputs)
        self._merger = merger
        self._fresh_ms = int(fresh_s * 1000)

    async def share(self, owned: Iterable[Part], now_ms: int) -> None:
        """One round. On a Redis error the last view stays: the batch path
        reports the outage, and no record is applied meanwhile anyway."""
        owned = set(owned)
        mine = self._merger.frontiers(owned)
        try:
            pipe = self._client.pipeline(transaction=False)
            if mine:
                pipe.hset(self._key, mapping=encode_entries(mine, now_ms))
            pipe.hgetall(self._key)
            *_, shared = await pipe.execute()
        except Exception as exc:  # nothing escapes a timer: keep the last view
            log.debug("frontiers not shared: %s", exc)
            return
        self._merger.remote = {
            part: frontier
            for part, (frontier, written_ms) in decode_entries(shared).items()
            if part not in owned
            and part[0] in self._inputs
            and now_ms - written_ms < self._fresh_ms
        }
