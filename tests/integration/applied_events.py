"""Which events the store applied: the duplicate guard of a slot records the
digest of every event that added to a count or sum there."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.crc import key_slot

from stream.store import keys
from stream.store.redis_store import event_hash
from stream.store.slot_tags import slot_tag


async def applied(
    client: Any, namespace: str, event_ids: Iterable[str], tag: str | None = None
) -> set[str]:
    """The ids among `event_ids` in the guard of `tag`'s slot on a cluster
    (None: a standalone Redis, whose one guard has slot 0's tag)."""
    ids = list(event_ids)
    slot = 0 if tag is None else key_slot(tag.encode())
    guard = keys.event_guard(namespace, slot_tag(slot))
    scores = await client.zmscore(guard, [event_hash(e) for e in ids]) if ids else []
    return {e for e, s in zip(ids, scores, strict=True) if s is not None}
