"""Redis backend of the EventStore protocol.

One EVALSHA per batch and operation (the batch travels as one JSON argument),
because per-event round trips cap a Python client at a few thousand events/s
(NOTES §3). Scripts are loaded at start and reloaded if Redis forgets them.
Connection problems surface as StoreUnavailable so the caller retries the
batch instead of acking it.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from detectors.errors import StoreUnavailable
from detectors.rules import EntityType
from stream.store import keys
from stream.store.base import (
    AppendStatus,
    IncidentClaim,
    IncidentOutcome,
    IncidentStatus,
    LogAppend,
    LogObservation,
)

# Most log entries returned around one event: bounds reply size and Redis time
# for an entity far past any threshold. A capped read still proves the
# threshold was crossed; the alert marks its count as a lower bound.
READ_CAP = 512
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)


def _load_lua(name: str) -> str:
    return resources.files("stream.store").joinpath("lua", name).read_text(encoding="utf-8")


class RedisStore:
    def __init__(self, client: aioredis.Redis, namespace: str, read_cap: int = READ_CAP) -> None:
        self._client = client
        self._ns = namespace
        self._read_cap = read_cap
        self._sources = {
            "append": _load_lua("append_and_read.lua"),
            "claim": _load_lua("claim_incidents.lua"),
        }
        self._sha: dict[str, str] = {}

    @classmethod
    def from_url(
        cls, url: str, namespace: str, timeout_s: float, read_cap: int = READ_CAP
    ) -> RedisStore:
        client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            max_connections=8,
            retry_on_timeout=False,
            health_check_interval=30,
        )
        return cls(client, namespace, read_cap)

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    async def start(self) -> None:
        await self._load_scripts()

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
                self._sha[name] = await self._client.script_load(src)
        except _TRANSIENT as exc:
            raise StoreUnavailable("script load", exc) from exc

    async def _eval(self, name: str, keys_: list[str], arg: bytes) -> Any:
        for attempt in (1, 2):
            try:
                if name not in self._sha:
                    await self._load_scripts()
                return await self._client.evalsha(self._sha[name], len(keys_), *keys_, arg)
            except NoScriptError:
                # Redis restarted or flushed its script cache; reload once and retry.
                self._sha.clear()
                if attempt == 2:
                    raise
            except _TRANSIENT as exc:
                raise StoreUnavailable(name, exc) from exc
        raise AssertionError("unreachable")

    async def append_and_read(self, appends: Sequence[LogAppend]) -> list[LogObservation]:
        if not appends:
            return []
        key_index: dict[str, int] = {}
        ops: list[list[Any]] = []
        for a in appends:
            key = keys.event_log(self._ns, a.entity_type, a.entity_id, a.log_name)
            idx = key_index.setdefault(key, len(key_index) + 1)
            ttl_ms = a.retention_ms + a.span_ms
            ops.append(
                [
                    idx,
                    a.event_id,
                    str(a.event_ms),
                    str(a.span_ms),
                    str(a.retention_ms),
                    str(ttl_ms),
                    str(self._read_cap),
                ]
            )
        raw = await self._eval("append", list(key_index), orjson.dumps(ops))
        return [_observation(r) for r in raw]

    async def claim_incidents(self, claims: Sequence[IncidentClaim]) -> list[IncidentOutcome]:
        if not claims:
            return []
        key_index: dict[str, int] = {}
        ops: list[list[Any]] = []
        for c in claims:
            key = keys.incident(self._ns, c.entity_type, c.entity_id, c.rule_id)
            idx = key_index.setdefault(key, len(key_index) + 1)
            ops.append(
                [
                    idx,
                    str(c.start_ms),
                    str(c.end_ms),
                    str(c.cooldown_ms),
                    c.alert_id,
                    c.trigger_event_id,
                    c.trigger_position,
                    c.payload.decode(),
                    str(c.ttl_ms),
                ]
            )
        raw = await self._eval("claim", list(key_index), orjson.dumps(ops))
        return [
            IncidentOutcome(
                status=IncidentStatus(status.decode()),
                alert_id=alert_id.decode(),
                payload=payload or None,
            )
            for status, alert_id, payload in raw
        ]

    async def log_members(
        self, entity_type: EntityType, entity_id: str, log_name: str
    ) -> list[str]:
        """Event ids currently in an entity's log (inspection, tests, the demo)."""
        key = keys.event_log(self._ns, entity_type, entity_id, log_name)
        members = await self._client.zrange(key, 0, -1)
        return [m.decode() for m in cast(list[bytes], members)]

    async def drop_namespace(self) -> int:
        """Delete every key of this store's namespace (backtest scratch space)."""
        deleted = 0
        async for key in self._client.scan_iter(match=keys.namespace_pattern(self._ns), count=1000):
            deleted += await self._client.unlink(key)
        return deleted


def _observation(raw: list[Any]) -> LogObservation:
    status, flat, truncated = raw
    entries = [(flat[i].decode(), int(float(flat[i + 1]))) for i in range(0, len(flat), 2)]
    return LogObservation(AppendStatus(status.decode()), entries, bool(truncated))
