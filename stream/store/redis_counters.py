"""Counter readings from Redis (stream.store.counters says what a reading
is): plain read commands in two pipelined rounds (a distinct count needs
its newest member's time before it can count the window), no script and no
write, so a console can read from a replica."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.errors import StoreUnavailable
from stream.store import keys
from stream.store.counters import CounterQuery, CounterReading
from stream.store.redis_connection import NOT_NOW, TRANSIENT

__all__ = ["RedisCounters"]


class RedisCounters:
    def __init__(self, client: Any, namespace: str, hasher: keys.KeyHasher) -> None:
        self._client, self._ns, self._hasher = client, namespace, hasher

    async def read(self, query: CounterQuery) -> list[CounterReading]:
        """Raises StoreUnavailable when Redis does not answer."""
        prefix = keys.entity_prefix(self._ns, self._hasher.tag(query.entity, query.entity_ids))
        try:
            return await self._read(prefix, query.wanted())
        except (*TRANSIENT, *NOT_NOW, ResponseError) as exc:
            raise StoreUnavailable("counters_read", exc) from exc

    async def _read(
        self, prefix: str, wanted: list[tuple[AggregateSpec, str | None]]
    ) -> list[CounterReading]:
        first = self._client.pipeline(transaction=False)
        for spec, currency in wanted:
            if spec.kind is AggregateKind.FIRST_SEEN:
                first.hget(prefix + keys.first_seen_suffix(spec.window_ms), spec.agg_id)
            elif spec.kind is AggregateKind.DISTINCT:
                first.zrevrange(prefix + keys.aggregate_suffix(spec.agg_id), 0, 0, withscores=True)
            else:
                first.hmget(prefix + keys.aggregate_suffix(spec.agg_id, currency), "n", "t")
        replies = await first.execute()
        return await self._finish(prefix, wanted, replies)

    async def _finish(
        self, prefix: str, wanted: list[tuple[AggregateSpec, str | None]], replies: list[Any]
    ) -> list[CounterReading]:
        """Bucketed and first-seen readings as they are; distinct ones
        counted over the window ending at their newest member."""
        out: list[CounterReading | None] = []
        counts = self._client.pipeline(transaction=False)
        pending: list[tuple[int, AggregateSpec, int]] = []
        for (spec, currency), reply in zip(wanted, replies, strict=True):
            if spec.kind is AggregateKind.FIRST_SEEN:
                out.append(CounterReading(spec, None, None if reply is None else int(reply), None))
            elif spec.kind is AggregateKind.DISTINCT:
                if not reply:
                    out.append(CounterReading(spec, None, None, None))
                    continue
                newest = int(reply[0][1])
                assert spec.window_ms is not None
                key = prefix + keys.aggregate_suffix(spec.agg_id)
                counts.zcount(key, f"({newest - spec.window_ms}", newest)
                pending.append((len(out), spec, newest))
                out.append(None)
            else:
                out.append(_bucketed(spec, currency, reply))
        if pending:
            for (at, spec, newest), n in zip(pending, await counts.execute(), strict=True):
                out[at] = CounterReading(spec, None, int(n), newest + 1)
        return [r for r in out if r is not None]


def _bucketed(spec: AggregateSpec, currency: str | None, reply: list[Any]) -> CounterReading:
    newest, total = reply
    if newest is None:
        return CounterReading(spec, currency, None, None)
    assert spec.bucket_ms is not None
    return CounterReading(spec, currency, int(total), (int(newest) + 1) * spec.bucket_ms)
