"""The book of active freezes on Redis (standalone or Cluster): one script,
freeze_book.lua, over five keys under one hash tag, so each operation is
atomic across every worker. Any Redis failure surfaces as StoreUnavailable:
the caller (stream.releases) retries on its next round."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import orjson
from redis.exceptions import NoScriptError, RedisError

from detectors.errors import StoreUnavailable
from detectors.releases import ActiveFreeze, ReleaseSpec
from stream.store import keys
from stream.store.freezes import TRIM_BATCH, ClaimOutcome, ClaimStatus, Registration

__all__ = ["RedisFreezeBook"]

_SOURCE = resources.files("stream.store").joinpath("lua", "freeze_book.lua")


class RedisFreezeBook:
    def __init__(self, client: Any, namespace: str) -> None:
        self._client = client
        self._keys = keys.freeze_book(namespace)
        self._source = _SOURCE.read_text(encoding="utf-8")
        self._sha: str | None = None
        # Called with (op, seconds, error kind or None) after every script call.
        self.observer: Callable[[str, float, str | None], None] | None = None

    async def _call(self, op: str, *args: Any) -> Any:
        started = time.perf_counter()
        error: str | None = None
        try:
            return await self._eval(op, args)
        except StoreUnavailable as exc:
            error = type(exc.cause).__name__
            raise
        finally:
            if self.observer is not None:
                self.observer(f"freeze_book.{op}", time.perf_counter() - started, error)

    async def _eval(self, op: str, args: tuple[Any, ...]) -> Any:
        for attempt in (1, 2):
            try:
                if self._sha is None:
                    self._sha = await self._client.script_load(self._source)
                return await self._client.execute_command(
                    "EVALSHA", self._sha, len(self._keys), *self._keys, op, *args
                )
            except NoScriptError as exc:
                self._sha = None  # Redis restarted or flushed its scripts: load again
                if attempt == 2:
                    raise StoreUnavailable(f"freeze_book.{op}", exc) from exc
            except (RedisError, OSError) as exc:
                raise StoreUnavailable(f"freeze_book.{op}", exc) from exc
        raise AssertionError("unreachable")

    async def register(self, freezes: Sequence[ActiveFreeze]) -> list[Registration]:
        if not freezes:
            return []
        items = [[f.freeze_id, f.expires_at_ms, f.to_json().decode()] for f in freezes]
        reply = await self._call("register", orjson.dumps(items))
        return [Registration(_text(r)) for r in reply]

    async def claim(
        self, requests: Sequence[tuple[str, ReleaseSpec]], now_ms: int, lease_ms: int
    ) -> list[ClaimOutcome]:
        if not requests:
            return []
        items = orjson.dumps(
            [[fid, spec.to_json().decode(), spec.control_id] for fid, spec in requests]
        )
        reply = await self._call("claim", now_ms, lease_ms, items)
        return [
            _outcome(fid, ClaimStatus(_text(st)), spec, info, bool(first))
            for (fid, _), (st, spec, info, first) in zip(requests, reply, strict=True)
        ]

    async def due(
        self, now_ms: int, lease_ms: int, limit: int, expired: ReleaseSpec
    ) -> list[ClaimOutcome]:
        reply = await self._call("due", now_ms, lease_ms, limit, expired.to_json())
        return [_outcome(_text(fid), ClaimStatus.CLAIMED, spec, info) for fid, spec, info in reply]

    async def done(self, freeze_ids: Sequence[str], now_ms: int, retention_ms: int) -> int:
        ids = orjson.dumps(list(freeze_ids))
        return int(await self._call("done", now_ms, retention_ms, TRIM_BATCH, ids))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _outcome(
    fid: str, status: ClaimStatus, spec: bytes, info: bytes, first: bool = False
) -> ClaimOutcome:
    return ClaimOutcome(
        fid,
        status,
        ReleaseSpec.from_json(spec) if spec else None,
        ActiveFreeze.from_json(info) if info else None,
        first,
    )
