"""A hash tag per Redis Cluster slot, for keys that belong to a slot rather
than to an entity (the aggregate script's duplicate guard: one per call, and
a call is one slot).

The tags are found by search: `{g<i>}` for the smallest i whose CRC16 lands
in the slot. The table of all 16,384 is built once, on the first cluster
lookup (about 170,000 CRCs); a standalone Redis only ever asks for slot 0.
"""

from __future__ import annotations

import functools

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["slot_tag"]


def slot_tag(slot: int) -> str:
    """`{g<i>}`, whose keys all hash to `slot`."""
    if slot == 0:
        return _slot_0()
    return _table()[slot]


@functools.cache
def _slot_0() -> str:
    i = 0
    while key_slot(f"g{i}".encode()) != 0:
        i += 1
    return f"{{g{i}}}"


@functools.cache
def _table() -> tuple[str, ...]:
    found: dict[int, str] = {}
    i = 0
    while len(found) < REDIS_CLUSTER_HASH_SLOTS:
        found.setdefault(key_slot(f"g{i}".encode()), f"{{g{i}}}")
        i += 1
    return tuple(found[s] for s in range(REDIS_CLUSTER_HASH_SLOTS))
