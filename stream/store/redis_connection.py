"""The Redis connection the store uses, and how it reads Redis' errors.

Apart from the store's logic because both are about the wire: how a large
script call is packed and sent, and which failures mean "retry the batch"
(StoreUnavailable) rather than "this operation is wrong".
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["BUSY_PREFIXES", "NOT_NOW", "SEND_BUFFER", "TRANSIENT", "HiredisPackingConnection"]

TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)
# Server replies that mean "not now" rather than "this op is wrong". redis-py
# maps most to their own classes (and strips the code from the message); the
# others are recognised by their prefix.
NOT_NOW = (
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    AskError,
    BusyLoadingError,
    RedisClusterException,
)
BUSY_PREFIXES = (
    "OOM",
    "READONLY",
    "BUSY",
    "MISCONF",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "LOADING",
    "MASTERDOWN",
    "MOVED",
    "ASK",
)


# A batch's script call is ~100 KB: with the kernel's default send buffer
# (16 KB to start) most of it would wait in asyncio's buffer for the event
# loop, which is busy preparing the next batch, and Redis would idle.
SEND_BUFFER = 4 * 1024 * 1024


class HiredisPackingConnection(aioredis.Connection):
    """Packs the batch's EVALSHA (hundreds of keys and one large argument) with
    hiredis' C packer instead of redis-py's per-argument Python encoding, and
    hands it to the socket at once (see send_packed_command)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if args and args[0] == "EVALSHA":
            return [hiredis.pack_command(args)]
        return super().pack_command(*args)

    async def _connect(self) -> None:
        await super()._connect()  # type: ignore[no-untyped-call]
        sock = self._writer.transport.get_extra_info("socket") if self._writer else None
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)

    async def send_packed_command(
        self, command: str | bytes | Iterable[bytes], check_health: bool = True
    ) -> None:
        """With a socket timeout, redis-py writes inside asyncio.wait_for, which
        (Python 3.11) runs the write in a new task: the command would only
        leave on a later turn of the event loop, after whatever CPU work the
        caller does next. Write it now; only the flow-control wait (and its
        error handling) stays with redis-py."""
        if not self.is_connected or self._writer is None or isinstance(command, str | bytes):
            return await super().send_packed_command(command, check_health)
        if check_health:
            await self.check_health()  # type: ignore[no-untyped-call]  # a due PING goes first
        try:
            self._writer.writelines(command)
        except OSError as exc:
            await self.disconnect(nowait=True)
            raise RedisConnectionError(f"Error while writing to socket: {exc}") from exc
        await super().send_packed_command([], check_health=False)
