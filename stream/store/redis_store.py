"""Redis backend of the EventStore protocol (standalone or Cluster).

One EVALSHA per batch carries every op as one JSON argument, because
per-event round trips cap a Python client at a few thousand events/s. On
Redis Cluster the batch is split per hash slot (all keys of one
entity share a tag) and the per-slot calls run concurrently. Scripts are
loaded at start and reloaded if Redis forgets them. Connection problems and
server-side "not now" errors surface as StoreUnavailable, so the caller
retries the batch instead of acking it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from importlib import resources
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    NoScriptError,
    RedisError,
    ResponseError,
)

from detectors.errors import StoreUnavailable
from stream.errors import StoreLayoutMismatch
from stream.store import aggregate_calls, keys
from stream.store.base import (
    EventObservations,
    EventRequests,
    IncidentClaim,
    IncidentOutcome,
    StoreConfig,
)
from stream.store.guard_counters import GuardCounters
from stream.store.payouts import PayoutBook
from stream.store.redis_connection import (
    BUSY_PREFIXES,
    NOT_NOW,
    TRANSIENT,
    HiredisPackingConnection,
)
from stream.store.redis_counters import RedisCounters
from stream.store.redis_guard import GUARD_SCRIPTS, RedisGuardCounters
from stream.store.redis_health import RedisHealthLedger
from stream.store.redis_incidents import claim_incidents
from stream.store.redis_payouts import PAYOUT_SCRIPTS, RedisPayoutBook

__all__ = ["CLUSTER_CONCURRENCY", "RedisStore", "T", "event_hash"]


def _load_lua(name: str) -> str:
    return resources.files("stream.store").joinpath("lua", name).read_text(encoding="utf-8")


def event_hash(event_id: str) -> str:
    """128-bit digest of an event id: the duplicate guard stores this, not the
    id (32 characters instead of up to 128). One guard holds every event of
    its slot within the horizon, so a pair of events colliding anywhere in
    it would count: at 10^9 events per horizon that is ~1.5e-21, where 64
    bits would give ~3 %."""
    return hashlib.blake2b(event_id.encode(), digest_size=16).hexdigest()


class RedisStore:
    def __init__(
        self,
        client: Any,
        namespace: str,
        config: StoreConfig | None = None,
        *,
        hasher: keys.KeyHasher,
    ) -> None:
        self._client = client
        self._hasher = hasher
        # Called with (op, seconds, error kind or None) after every script call.
        self.observer: Callable[[str, float, str | None], None] | None = None
        self._ns = namespace
        self._config = config or StoreConfig()
        self._cluster = isinstance(client, RedisCluster)
        self._sources = {
            "aggregates": _load_lua("aggregates.lua"),
            "claim": _load_lua("claim_incidents.lua"),
            **GUARD_SCRIPTS,
            **PAYOUT_SCRIPTS,
        }
        self._sha: dict[str, str] = {}
        # Aggregate calls reach Redis one batch at a time, in the order apply
        # was called (see EventStore.apply).
        self._in_order = asyncio.Lock()
        self._payout_book: RedisPayoutBook | None = None
        self._epoch: str | None = None
        cfg = self._config
        self._templates = aggregate_calls.Templates(
            aggregate_calls.Limits(
                dedup_horizon_ms=cfg.dedup_horizon_ms,
                lateness_ms=cfg.lateness_ms,
                first_seen_ttl_ms=cfg.first_seen_ttl_ms,
                ttl_slack_ms=cfg.ttl_slack_ms,
                first_seen_backdate_ms=cfg.backdate_ms,
                counted_events=cfg.counted_events,
            )
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        namespace: str,
        timeout_s: float,
        config: StoreConfig | None = None,
        cluster: bool = False,
        *,
        hasher: keys.KeyHasher,
    ) -> RedisStore:
        options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
        }
        if cluster:
            client: Any = RedisCluster.from_url(url, **options)
        else:
            client = aioredis.Redis.from_url(
                url,
                max_connections=8,
                health_check_interval=30,
                connection_class=HiredisPackingConnection,
                **options,
            )
        return cls(client, namespace, config, hasher=hasher)

    @property
    def client(self) -> Any:
        return self._client

    @property
    def namespace(self) -> str:
        return self._ns

    @property
    def hasher(self) -> keys.KeyHasher:
        return self._hasher

    async def start(self) -> None:
        await self._load_scripts()
        self._epoch = await self._claim_epoch()
        await self._claim_layout()

    async def _claim_layout(self) -> None:
        """Adopt the namespace's key layout, or refuse state keyed otherwise."""
        expected = f"{keys.KEY_LAYOUT}:{self._hasher.fingerprint()}"
        found = await self._adopt(keys.key_layout(self._ns), expected, "key layout")
        if found != expected:
            raise StoreLayoutMismatch(self._ns, found, expected)

    async def _claim_epoch(self) -> str:
        """The namespace's epoch: created if missing, otherwise adopted."""
        return await self._adopt(keys.epoch(self._ns), uuid.uuid4().hex, "epoch")

    async def _adopt(self, key: str, value: str, operation: str) -> str:
        """A sentinel's value: `value` if the key was missing, else what it holds."""
        try:
            await self._client.set(key, value, nx=True)
            held = await self._client.get(key)
        except (*TRANSIENT, ResponseError) as exc:
            raise StoreUnavailable(operation, exc) from exc
        return held.decode() if isinstance(held, bytes) else str(held)

    async def check_epoch(self) -> bool:
        """False when the epoch sentinel vanished or changed since start: Redis
        lost its state. A new epoch is then adopted so the loss is reported once
        (counters restart from zero; see `fraudstream replay`)."""
        try:
            value = await self._client.get(keys.epoch(self._ns))
        except (*TRANSIENT, ResponseError) as exc:
            raise StoreUnavailable("epoch", exc) from exc
        current = value.decode() if isinstance(value, bytes) else value
        if current is not None and current == self._epoch:
            return True
        self._epoch = await self._claim_epoch()
        return False

    async def close(self) -> None:
        await self._client.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except (RedisError, OSError):
            return False

    async def _load_scripts(self) -> None:
        try:
            for name, src in self._sources.items():
                # On a cluster, SCRIPT LOAD goes to every primary.
                self._sha[name] = await self._client.script_load(src)
        except TRANSIENT as exc:
            raise StoreUnavailable("script load", exc) from exc
        except ResponseError as exc:
            raise StoreUnavailable("script load", exc) from exc

    async def _eval(self, name: str, keys_: list[str], args: list[Any]) -> Any:
        started = time.perf_counter()
        error: str | None = None
        try:
            return await self._eval_once(name, keys_, args)
        except StoreUnavailable as exc:
            error = type(exc.cause).__name__
            raise
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            if self.observer is not None:
                self.observer(name, time.perf_counter() - started, error)

    async def _eval_once(self, name: str, keys_: list[str], args: list[Any]) -> Any:
        for attempt in (1, 2, 3):
            try:
                if name not in self._sha:
                    await self._load_scripts()
                return await self._client.execute_command(
                    "EVALSHA", self._sha[name], len(keys_), *keys_, *args
                )
            except NoScriptError as exc:
                # Redis restarted, failed over or flushed its script cache: reload.
                self._sha.clear()
                if attempt == 3:
                    raise StoreUnavailable(name, exc) from exc
            except TRANSIENT as exc:
                raise StoreUnavailable(name, exc) from exc
            except NOT_NOW as exc:
                raise StoreUnavailable(name, exc) from exc
            except ResponseError as exc:
                if str(exc).startswith(BUSY_PREFIXES):
                    raise StoreUnavailable(name, exc) from exc
                raise
        raise AssertionError("unreachable")

    def _slot(self, tag: str) -> int:
        return key_slot(tag.encode()) if self._cluster else 0

    async def apply(
        self, events: Sequence[EventRequests], after: asyncio.Event | None = None
    ) -> list[EventObservations]:
        calls = self._encode(events)  # before the first await (see EventStore.apply)
        if after is not None:
            await after.wait()
        async with self._in_order:
            replies = await self._each_slot(
                "aggregates", {slot: (list(c.keys), c.argv) for slot, c in calls.items()}
            )
        return aggregate_calls.decode(events, calls, replies)

    def _encode(self, events: Sequence[EventRequests]) -> dict[int, aggregate_calls.AggregateCall]:
        cfg = self._config
        horizon, guard_ttl = cfg.dedup_horizon_ms, cfg.dedup_horizon_ms + cfg.ttl_slack_ms
        refresh = max(cfg.ttl_slack_ms // 2, 1)  # TTLs are refreshed once per this much event time
        calls = aggregate_calls.encode(
            events, self._templates, self._ns, self._slot, event_hash, self._hasher
        )
        table = self._templates.table_json  # after encode: it may have added specs
        for call in calls.values():
            call.argv = [
                table,
                orjson.dumps(call.flat),
                horizon,
                guard_ttl,
                refresh,
                cfg.counted_events,
            ]
        return calls

    async def _each_slot(
        self, name: str, calls: dict[int, tuple[list[str], list[Any]]]
    ) -> dict[int, Any]:
        """One script call per slot, concurrently. A single call (always, on a
        standalone Redis) is awaited directly: gather() would wrap it in a task
        that only sends on a later turn of the event loop, so a caller that
        goes on preparing the next batch would delay the send until it is done."""
        if not calls:
            return {}
        if len(calls) == 1:
            ((slot, (keys_, args)),) = calls.items()
            return {slot: await self._eval(name, keys_, args)}
        slots = list(calls)
        replies = await _bounded_gather([self._eval(name, *calls[s]) for s in slots])
        return dict(zip(slots, replies, strict=True))

    async def claim_incidents(self, claims: Sequence[IncidentClaim]) -> list[IncidentOutcome]:
        return await claim_incidents(claims, self._ns, self._hasher, self._slot, self._each_slot)

    async def drop_namespace(self) -> int:
        """Delete every key of this store's namespace (backtest scratch space, tests)."""
        deleted = 0
        chunk: list[Any] = []
        async for key in self._client.scan_iter(match=keys.namespace_pattern(self._ns), count=1000):
            chunk.append(key)
            if len(chunk) >= 500:
                deleted += await self._unlink(chunk)
                chunk = []
        if chunk:
            deleted += await self._unlink(chunk)
        return deleted

    async def _unlink(self, chunk: list[Any]) -> int:
        if not self._cluster:
            return int(await self._client.unlink(*chunk))
        by_slot: dict[int, list[Any]] = {}
        for key in chunk:
            by_slot.setdefault(key_slot(key), []).append(key)
        counts = await _bounded_gather([self._client.unlink(*ks) for ks in by_slot.values()])
        return sum(int(c) for c in counts)

    def guard_counters(self) -> GuardCounters:
        """The guardrails' shared counts (stream.store.guard_counters)."""
        return RedisGuardCounters(self._ns, self._hasher, self._eval)

    def payout_book(self) -> PayoutBook:
        if self._payout_book is None:
            self._payout_book = RedisPayoutBook(self._ns, self._hasher, self._each_slot, self._slot)
        return self._payout_book

    async def advance_delivered(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """ZADD GT: a member's score (the offset) only ever rises; offsets are
        exact as scores up to 2^53."""
        if not offsets:
            return
        mapping = {keys.partition_member(t, p): offset for (t, p), offset in offsets.items()}
        await self._plain(
            "delivered_advance",
            self._client.zadd(keys.delivered(self._ns, group), mapping, gt=True),
        )

    async def delivered(
        self, group: str, parts: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], int]:
        if not parts:
            return {}
        members = [keys.partition_member(t, p) for t, p in parts]
        scores = await self._plain(
            "delivered_read", self._client.zmscore(keys.delivered(self._ns, group), members)
        )
        return {part: int(s) for part, s in zip(parts, scores, strict=True) if s is not None}

    async def _plain(self, op: str, call: Awaitable[T]) -> T:
        """A plain command (no script), observed and classified like `_eval`."""
        started = time.perf_counter()
        error: str | None = None
        try:
            return await call
        except (*TRANSIENT, *NOT_NOW, ResponseError) as exc:
            error = type(exc).__name__
            raise StoreUnavailable(op, exc) from exc
        finally:
            if self.observer is not None:
                self.observer(op, time.perf_counter() - started, error)

    def health_ledger(self) -> RedisHealthLedger:
        """The merchant-health ledger (stream.store.redis_health); idle
        merchants' ledgers go after the first sightings' TTL."""
        ledger = RedisHealthLedger(
            self._client, self._ns, self._hasher, self._config.first_seen_ttl_ms
        )
        ledger.observer = self.observer
        return ledger

    def counters(self) -> RedisCounters:
        return RedisCounters(self._client, self._ns, self._hasher)


T = TypeVar("T")
# Calls in flight at once on a cluster. A batch touches hundreds of hash
# slots (one call each), and redis-py's cluster client fails a call past 100
# connections to one node (MaxConnectionsError) instead of waiting for one.
CLUSTER_CONCURRENCY = 32


async def _bounded_gather(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    if len(calls) <= CLUSTER_CONCURRENCY:
        return list(await asyncio.gather(*calls))
    gate = asyncio.Semaphore(CLUSTER_CONCURRENCY)

    async def gated(call: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await call

    return list(await asyncio.gather(*(gated(c) for c in calls)))
