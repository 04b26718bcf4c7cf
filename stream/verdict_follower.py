"""Reading `risk-verdicts` in the workers: analysts' verdicts counted against
merchant health (stream.health_rescore.apply_verdicts).

One consumer per worker, outside faust, in a group of the workers' own
(`<app id>-verdicts`): each verdict is applied by one worker, and the
group's committed offset moves only after a fetched batch is applied, so a
worker that dies mid-batch leaves it to the next one (applying is
idempotent: a violation is recorded once by id, a removal of one gone
already changes nothing). A record that is not a verdict goes to the
dead-letter topic with its reason and is passed over; a store that does
not answer is retried, the offset held, until it does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer

from detectors.errors import ContractViolation, StoreUnavailable
from detectors.verdicts import Verdict, parse_verdict
from stream.batch_outputs import dead_letter_output
from stream.codec import DeadLetter, SourceRecord
from stream.health_feed import Publish
from stream.settings import Settings

__all__ = ["VerdictFollower", "read_verdicts"]

log = logging.getLogger(__name__)
RETRY_S = 2.0
FETCH_WAIT_MS = 500
MAX_RECORDS = 500

# Applies verdicts, in topic order, at a wall-clock time.
Apply = Callable[[Sequence[Verdict], int], Awaitable[int]]


def read_verdicts(messages: Sequence[Any]) -> tuple[list[Verdict], list[DeadLetter]]:
    """The verdicts among `messages`, and a dead letter for each record that
    is none (ContractViolation names the field at fault)."""
    verdicts: list[Verdict] = []
    rejected: list[DeadLetter] = []
    for m in messages:
        record = SourceRecord(m.topic, m.partition, m.offset, m.key, m.value, m.timestamp)
        try:
            verdicts.append(parse_verdict(m.value or b""))
        except ContractViolation as exc:
            rejected.append(DeadLetter(record, exc.kind, exc.message, exc.field))
    return verdicts, rejected


class VerdictFollower:
    def __init__(
        self,
        settings: Settings,
        apply: Apply,
        publish: Publish,
        client_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
        retry_s: float = RETRY_S,
    ) -> None:
        self._settings = settings
        self._apply = apply
        self._publish = publish
        self._options = dict(client_options or {})
        self._clock = clock
        self._retry_s = retry_s
        self.applied = 0  # verdicts applied by this worker
        self.rejected = 0

    async def run(self) -> None:
        """Follow the topic until cancelled; a lost broker is retried."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("verdict topic unreadable (%s); retrying", exc)
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        consumer = AIOKafkaConsumer(
            self._settings.topics.verdicts,
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=f"{self._settings.app_id}-verdicts",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self._options,
        )
        await consumer.start()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=FETCH_WAIT_MS, max_records=MAX_RECORDS)
                messages = [m for msgs in batch.values() for m in msgs]
                if messages:
                    await self.handle(messages)
                    await consumer.commit()
        finally:
            await consumer.stop()

    async def handle(self, messages: Sequence[Any]) -> None:
        """Dead-letter what is no verdict, then apply the rest, retried while
        the store is down (nothing is committed meanwhile)."""
        now_ms = int(self._clock() * 1000)
        verdicts, rejected = read_verdicts(messages)
        for letter in rejected:
            log.error(
                "verdict record refused (offset %d): %s", letter.record.offset, letter.message
            )
            out = dead_letter_output(letter, self._settings, now_ms)
            await self._publish(out.topic, out.key or b"", out.value)
        self.rejected += len(rejected)
        while verdicts:
            try:
                await self._apply(verdicts, now_ms)
            except StoreUnavailable as exc:
                log.warning("verdicts not applied yet, the store is unavailable (%s)", exc)
                await asyncio.sleep(self._retry_s)
                continue
            self.applied += len(verdicts)
            return
