"""Incident claims on Redis (claim_incidents.lua): one call per slot, the
claims of each in their order, through the RedisStore's script runner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from detectors.decisions import ALERT_ID_PLACEHOLDER
from stream.store import keys
from stream.store.base import IncidentClaim, IncidentOutcome, IncidentStatus

__all__ = ["claim_incidents"]

EachSlot = Callable[[str, dict[int, tuple[list[str], list[Any]]]], Awaitable[dict[int, Any]]]


class _Claims:
    """The keys and claims of one incident script call (one slot on a cluster)."""

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.units: list[list[Any]] = []
        self.where: list[int] = []  # the claim's index, per unit

    def kidx(self, key: str) -> int:
        return self.keys.setdefault(key, len(self.keys) + 1)


async def claim_incidents(
    claims: Sequence[IncidentClaim],
    namespace: str,
    hasher: keys.KeyHasher,
    slot_of: Callable[[str], int],
    each_slot: EachSlot,
) -> list[IncidentOutcome]:
    """Applied in order, atomically per entity; results align with `claims`."""

    calls: dict[int, _Claims] = {}
    for ci, c in enumerate(claims):
        tag = hasher.tag(c.entity_type, c.entity_ids)
        call = calls.setdefault(slot_of(tag), _Claims())
        idx = call.kidx(keys.incident(namespace, tag, c.rule_id))
        call.units.append(
            [
                idx,
                str(c.start_ms),
                str(c.end_ms),
                str(c.cooldown_ms),
                c.base,
                c.trigger_event_id,
                c.trigger_position,
                c.payload.decode(),
                str(c.ttl_ms),
                str(c.retention_ms),
                str(c.epoch),
                ALERT_ID_PLACEHOLDER,
            ]
        )
        call.where.append(ci)
    replies = await each_slot(
        "claim",
        {slot: (list(c.keys), [orjson.dumps(c.units)]) for slot, c in calls.items()},
    )
    out: list[IncidentOutcome | None] = [None] * len(claims)
    for slot, reply in replies.items():
        for ci, (st, alert_id, payload) in zip(calls[slot].where, reply, strict=True):
            out[ci] = IncidentOutcome(
                IncidentStatus(st.decode()), alert_id.decode(), payload or None
            )
    return [o for o in out if o is not None]
