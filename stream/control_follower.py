"""Reading `risk-control`: the worker's follower and the CLI's one-off read.

The follower has a consumer of its own, outside faust and outside any
group: it assigns every partition, starts at the beginning, commits
nothing, so every worker folds the whole topic and every worker agrees.
It builds a new immutable snapshot per fetched batch and replaces one
reference (`snapshot`); the pipeline reads that reference once per batch,
so a batch is judged under one snapshot and a change takes effect between
batches. `ready` is set once everything that was in the topic at start has
been folded: until then the worker neither decides nor reports ready.

A record that cannot be read is counted, logged and ignored: its key keeps
its last good state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

from detectors.control import ControlRecord, ControlRecordError
from detectors.control_parsing import parse_control
from detectors.control_snapshot import EMPTY, ControlSnapshot, fold
from stream.kafka_io import partitions

__all__ = ["ControlFollower", "Rejected", "decode", "fold_messages"]

log = logging.getLogger(__name__)
FETCH_WAIT_MS = 200  # the longest a change waits in the broker before it is fetched
RETRY_S = 2.0


@dataclass(frozen=True, slots=True)
class Rejected:
    offset: int
    key: str | None
    error: ControlRecordError


def decode(message: Any) -> tuple[str, ControlRecord | None] | Rejected:
    """(key, record), (key, None) for a Kafka tombstone, or why not."""
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    if key is None:
        return Rejected(message.offset, None, ControlRecordError("unknown", "a record needs a key"))
    if message.value is None:
        return (key, None)
    try:
        return (key, parse_control(key, message.value))
    except ControlRecordError as exc:
        return Rejected(message.offset, key, exc)


def fold_messages(
    snapshot: ControlSnapshot,
    messages: Iterable[Any],
    rejected: Callable[[Rejected], None],
    accepted: Callable[[str], None] | None = None,
) -> ControlSnapshot:
    """`rejected` and `accepted` (with the key) are called in topic order,
    so together they tell whether a key's latest record was refused."""
    good = []
    for message in messages:
        item = decode(message)
        if isinstance(item, Rejected):
            rejected(item)
        else:
            good.append(item)
            if accepted is not None:
                accepted(item[0])
    return fold(good, snapshot) if good else snapshot


class ControlFollower:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        on_rejected: Callable[[Rejected], None] | None = None,
        on_snapshot: Callable[[ControlSnapshot], None] | None = None,
        client_options: Mapping[str, Any] | None = None,
        on_accepted: Callable[[str], None] | None = None,
    ) -> None:
        """`client_options`: extra aiokafka client arguments (credentials).
        `on_accepted`: the key of each record folded (see fold_messages)."""
        self._options = dict(client_options or {})
        self._bootstrap = bootstrap
        self._topic = topic
        self._on_rejected = on_rejected
        self._on_snapshot = on_snapshot
        self._on_accepted = on_accepted
        self.snapshot: ControlSnapshot = EMPTY
        self.ready = asyncio.Event()

    def _rejected(self, item: Rejected) -> None:
        log.error(
            "control record refused (offset %d, key %r), last good state kept: %s",
            item.offset,
            item.key,
            item.error,
        )
        if self._on_rejected is not None:
            self._on_rejected(item)

    async def run(self) -> None:
        """Follow the topic until cancelled; a lost broker is retried, the
        snapshot kept meanwhile."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("control topic %s unreadable (%s); retrying", self._topic, exc)
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        # LookupError for a missing topic: run `fraudstream topics`.
        tps = await partitions(self._bootstrap, [self._topic], self._options)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=None,
            enable_auto_commit=False,
            **self._options,
        )
        await consumer.start()
        try:
            consumer.assign(tps)
            # After an error the fold starts again from scratch, and the
            # snapshot in use stays until the new fold has caught up.
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            snapshot, caught_up = EMPTY, False
            while True:
                batch = await consumer.getmany(*tps, timeout_ms=FETCH_WAIT_MS)
                for msgs in batch.values():
                    snapshot = fold_messages(snapshot, msgs, self._rejected, self._on_accepted)
                if not caught_up:
                    caught_up = all([await consumer.position(tp) >= ends[tp] for tp in tps])
                if caught_up and (snapshot is not self.snapshot or not self.ready.is_set()):
                    self._install(snapshot)
                if caught_up and not self.ready.is_set():
                    self.ready.set()
                    log.info("control snapshot read: %d records", snapshot.applied)
        finally:
            await consumer.stop()

    def _install(self, snapshot: ControlSnapshot) -> None:
        self.snapshot = snapshot
        if self._on_snapshot is not None:
            self._on_snapshot(snapshot)
