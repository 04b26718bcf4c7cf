"""The merchant-health ledger on Redis (standalone or Cluster): plain
commands in one pipeline per call, no script. Each violation is written
with HSETNX (idempotent by id) and its owner recorded for removal by id;
reads are one HGETALL per merchant. A batch without violations or new
snapshots writes nothing. Any Redis failure surfaces as StoreUnavailable,
so the batch is retried."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from detectors.errors import StoreUnavailable
from detectors.health_bands import BandHistory
from detectors.rules_entities import EntityType
from stream.store import keys
from stream.store.health_ledger import (
    LedgerEntry,
    MerchantHealthState,
    entry_from_json,
    entry_to_json,
    header_of,
)

__all__ = ["ALERT_PREFIX", "BANDS_FIELD", "LAST_FIELD", "VIOLATION_PREFIX", "RedisHealthLedger"]

VIOLATION_PREFIX = "v:"
ALERT_PREFIX = "a:"
LAST_FIELD = "last"
BANDS_FIELD = "bands"
_MERCHANT = (EntityType.MERCHANT,)


class RedisHealthLedger:
    def __init__(self, client: Any, namespace: str, hasher: keys.KeyHasher, keep_ms: int) -> None:
        """`keep_ms`: a merchant's ledger outlives its last write by this
        much wall time (a TTL that only reclaims merchants nobody sees)."""
        self._client = client
        self._ns = namespace
        self._hasher = hasher
        self._keep_ms = keep_ms
        self._owners = keys.health_owners(namespace)
        self._bands = keys.health_bands(namespace)
        self._counts: dict[str, int] = {}
        # Called with (op, seconds, error kind or None) after every call.
        self.observer: Callable[[str, float, str | None], None] | None = None

    def _key(self, merchant_id: str) -> str:
        return keys.merchant_health(self._ns, self._tag(merchant_id))

    def _tag(self, merchant_id: str) -> str:
        return self._hasher.tag(_MERCHANT, (merchant_id,))

    async def _run(self, op: str, build: Callable[[Any], None]) -> list[Any]:
        started = time.perf_counter()
        error: str | None = None
        try:
            pipe = self._client.pipeline(transaction=False)
            build(pipe)
            result: Awaitable[list[Any]] = pipe.execute()
            return await result
        except (RedisError, OSError) as exc:
            error = type(exc).__name__
            raise StoreUnavailable(f"health.{op}", exc) from exc
        finally:
            if self.observer is not None:
                self.observer(f"health.{op}", time.perf_counter() - started, error)

    async def read(
        self, merchants: Sequence[str], records: bool = False
    ) -> dict[str, MerchantHealthState]:
        if not merchants:
            return {}

        def build(pipe: Any) -> None:
            for m in merchants:
                pipe.hgetall(self._key(m))
                if records:
                    pipe.get(keys.merchant_health_last(self._ns, self._tag(m)))
            pipe.hgetall(self._bands)

        *replies, bands = await self._run("read", build)
        self._counts = {_text(k): int(v) for k, v in bands.items()}
        if not records:
            return {m: _state(reply) for m, reply in zip(merchants, replies, strict=True)}
        pairs = zip(merchants, replies[0::2], replies[1::2], strict=True)
        return {m: _state(reply, whole) for m, reply, whole in pairs}

    @property
    def band_counts(self) -> Mapping[str, int]:
        return dict(self._counts)

    async def record(self, entries: Sequence[LedgerEntry]) -> list[bool]:
        if not entries:
            return []

        def build(pipe: Any) -> None:
            for e in entries:
                key, vid = self._key(e.merchant_id), e.violation.violation_id
                pipe.hsetnx(key, VIOLATION_PREFIX + vid, entry_to_json(e))
                pipe.hset(self._owners, vid, e.merchant_id)
                pipe.pexpire(key, self._keep_ms)

        replies = await self._run("record", build)
        return [bool(r) for r in replies[0::3]]

    async def remove(self, violation_ids: Sequence[str]) -> list[str]:
        if not violation_ids:
            return []
        (owners,) = await self._run("owners", lambda p: p.hmget(self._owners, list(violation_ids)))
        found = [(vid, _text(m)) for vid, m in zip(violation_ids, owners, strict=True) if m]
        if not found:
            return []

        def build(pipe: Any) -> None:
            for vid, merchant in found:
                pipe.hdel(self._key(merchant), VIOLATION_PREFIX + vid)

        await self._run("remove", build)
        return [m for _, m in found]

    async def record_alerts(self, alerts: Sequence[tuple[str, str, int]]) -> None:
        if not alerts:
            return

        def build(pipe: Any) -> None:
            for merchant, alert_id, at_ms in alerts:
                key = self._key(merchant)
                pipe.hsetnx(key, ALERT_PREFIX + alert_id, at_ms)
                pipe.pexpire(key, self._keep_ms)

        await self._run("alerts", build)

    async def save(
        self,
        snapshots: Mapping[str, bytes],
        moves: Mapping[str, int],
        forget: Mapping[str, Sequence[str]] | None = None,
        histories: Mapping[str, BandHistory] | None = None,
    ) -> None:
        moved = {band: n for band, n in moves.items() if n}
        forget = {m: ids for m, ids in (forget or {}).items() if ids}
        histories = histories or {}
        if not snapshots and not moved and not forget and not histories:
            return

        def build(pipe: Any) -> None:
            for merchant, ids in forget.items():
                pipe.hdel(self._key(merchant), *(ALERT_PREFIX + i for i in ids))
            for merchant, snapshot in snapshots.items():
                key = self._key(merchant)
                pipe.hset(key, LAST_FIELD, header_of(snapshot))
                pipe.pexpire(key, self._keep_ms)
                last = keys.merchant_health_last(self._ns, self._tag(merchant))
                pipe.set(last, snapshot, px=self._keep_ms)
            for merchant, history in histories.items():
                pipe.hset(self._key(merchant), BANDS_FIELD, history.to_bytes())
            for band, n in moved.items():
                pipe.hincrby(self._bands, band, n)

        await self._run("save", build)
        for band, n in moved.items():
            self._counts[band] = self._counts.get(band, 0) + n


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _state(fields: Mapping[Any, Any], whole: bytes | None = None) -> MerchantHealthState:
    last: bytes | None = None
    bands = BandHistory()
    entries = []
    alerts = []
    for name, value in sorted(fields.items()):
        field = _text(name)
        if field == LAST_FIELD:
            last = value if isinstance(value, bytes) else str(value).encode()
        elif field == BANDS_FIELD:
            bands = BandHistory.from_bytes(value)
        elif field.startswith(VIOLATION_PREFIX):
            entries.append(entry_from_json(value))
        elif field.startswith(ALERT_PREFIX):
            alerts.append((field[len(ALERT_PREFIX) :], int(value)))
    return MerchantHealthState(tuple(entries), last, tuple(alerts), bands, whole)
