"""faust's aiokafka transport with per-partition fetches (stream.blocked).

Plugged in through faust's own extension points: a Transport subclass whose
Consumer builds a consumer thread subclass, installed with the public
`app.transport` setter before any topic or agent is declared (declaring one
builds the transport). The thread overrides the one method that drains
fetched records, the rebalance callback and faust's stalled-partition check;
everything else is faust's.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import faust
from aiokafka.errors import ConsumerStoppedError, IllegalStateError
from faust.transport.drivers import aiokafka as faust_aiokafka

from stream.blocked import BlockedPartitions, PartitionFetcher

__all__ = [
    "POSITION_TIMEOUT_S",
    "IsolatingConsumer",
    "IsolatingConsumerThread",
    "IsolatingTransport",
    "install",
]

POSITION_TIMEOUT_S = 1.0


class IsolatingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Runs in faust's consumer thread, as the method it overrides does."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.blocked: BlockedPartitions = cast(IsolatingTransport, self.transport).blocked
        self._partitions = PartitionFetcher(self.blocked)

    async def _fetch_records(
        self,
        consumer: Any,
        active_partitions: Any,
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Any:
        # The same guards as faust's own implementation; the fetch context is
        # aiokafka's "a fetch is under way" mark (its poll-interval check).
        if not self.consumer.flow_active:
            return {}
        fetcher = consumer._fetcher
        if consumer._closed or fetcher._closed:
            raise ConsumerStoppedError()
        partitions = tuple(
            active_partitions if active_partitions is not None else consumer.assignment()
        )

        async def drain(tps: Any, wait_s: float, limit: int | None) -> Any:
            return await fetcher.fetched_records(set(tps), timeout=wait_s, max_records=limit)

        async def position(tp: Any) -> int | None:
            try:
                return int(await asyncio.wait_for(consumer.position(tp), POSITION_TIMEOUT_S))
            except (TimeoutError, IllegalStateError):
                return None

        with fetcher._subscriptions.fetch_context():
            return await self._partitions.fetch(
                partitions, drain, position, timeout or 0.0, max_records
            )

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        self.blocked.reassigned((tp.topic, tp.partition) for tp in assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    def verify_event_path(self, now: float, tp: Any) -> None:
        """faust logs a stopped partition as a stalled stream every few
        seconds; it is reported once, with its reason, already."""
        if (tp.topic, tp.partition) in self.blocked:
            return None
        return super().verify_event_path(now, tp)


class IsolatingConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> IsolatingConsumerThread:
        return IsolatingConsumerThread(self, loop=self.loop, beacon=self.beacon)


class IsolatingTransport(faust_aiokafka.Transport):
    Consumer = IsolatingConsumer

    def __init__(self, *args: Any, blocked: BlockedPartitions, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.blocked = blocked


def install(app: faust.App, blocked: BlockedPartitions) -> None:
    """Give `app` the isolating transport. Call before declaring topics or
    agents: they build (and keep) the transport in use at that moment."""
    app.transport = IsolatingTransport(app.conf.broker_consumer, app, blocked=blocked)
