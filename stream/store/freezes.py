"""The book of active freezes: every published freeze until it is released,
and the claims that make each release happen once across workers.

A freeze goes through: registered (published, waiting for its expiry) →
claimed (one worker holds a lease to publish its release) → done (released;
remembered for `retention_ms` so the incident that raised it cannot freeze
again). A claim's lease runs out if its worker dies before `done`: the next
sweep (`due`) hands the same release to another worker, so a release is
published at least once, always with the same id.

Time is the caller's wall clock in ms (expiry is enforced by the freezes'
consumers against wall time; leases are wall time too). Both backends
(freeze_book.lua on Redis, MemoryFreezeBook here) answer alike; the shared
cases are in tests/store_cases/freezes.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from detectors.releases import ActiveFreeze, ReleaseSpec

__all__ = [
    "TRIM_BATCH",
    "ClaimOutcome",
    "ClaimStatus",
    "FreezeBook",
    "MemoryFreezeBook",
    "Registration",
]


class Registration(StrEnum):
    NEW = "new"  # registered now: publish it
    ACTIVE = "active"  # registered before (a retried batch, a redelivery): publish it again
    RELEASED = "released"  # its release is claimed or done: never publish it again


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"  # this caller holds the lease: publish `spec`, then call done
    IN_HAND = "in_hand"  # the same command is claimed by another worker, or done
    RELEASED = "released"  # refused: another release (a command, the expiry) has it
    UNKNOWN = "unknown"  # refused: no such active freeze


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    freeze_id: str
    status: ClaimStatus
    spec: ReleaseSpec | None = None  # the release claimed or held (not for UNKNOWN)
    freeze: ActiveFreeze | None = None  # with CLAIMED
    first: bool = False  # refused, and no caller refused this command before


class FreezeBook(Protocol):
    async def register(self, freezes: Sequence[ActiveFreeze]) -> list[Registration]:
        """Before a freeze is published; results align with `freezes`."""

    async def claim(
        self, requests: Sequence[tuple[str, ReleaseSpec]], now_ms: int, lease_ms: int
    ) -> list[ClaimOutcome]:
        """Claim the release of each (freeze id, spec of a release command). A
        claim whose lease ran out is taken over with the release it was made
        for, not `spec`."""

    async def due(
        self, now_ms: int, lease_ms: int, limit: int, expired: ReleaseSpec
    ) -> list[ClaimOutcome]:
        """Claims whose lease ran out, then freezes whose expiry is at or before
        `now_ms` (claimed with `expired`): at most `limit`, all CLAIMED."""

    async def done(self, freeze_ids: Sequence[str], now_ms: int, retention_ms: int) -> int:
        """Mark released what was claimed; forget releases done before
        `now_ms - retention_ms`. Returns how many were still claimed."""


@dataclass(slots=True)
class MemoryFreezeBook:
    """The in-memory twin of freeze_book.lua, step for step."""

    info: dict[str, ActiveFreeze] = field(default_factory=dict)
    expiry: dict[str, int] = field(default_factory=dict)
    releases: dict[str, ReleaseSpec] = field(default_factory=dict)
    leases: dict[str, int] = field(default_factory=dict)
    released_at: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    async def register(self, freezes: Sequence[ActiveFreeze]) -> list[Registration]:
        out = []
        for f in freezes:
            if f.freeze_id in self.releases:
                out.append(Registration.RELEASED)
            elif f.freeze_id in self.info:
                out.append(Registration.ACTIVE)
            else:
                self.info[f.freeze_id] = f
                self.expiry[f.freeze_id] = f.expires_at_ms
                out.append(Registration.NEW)
        return out

    async def claim(
        self, requests: Sequence[tuple[str, ReleaseSpec]], now_ms: int, lease_ms: int
    ) -> list[ClaimOutcome]:
        return [self._claim(fid, spec, now_ms, lease_ms) for fid, spec in requests]

    def _claim(self, fid: str, spec: ReleaseSpec, now_ms: int, lease_ms: int) -> ClaimOutcome:
        held = self.releases.get(fid)
        if held is not None:
            lease = self.leases.get(fid)
            if lease is not None and lease <= now_ms:
                self.leases[fid] = now_ms + lease_ms
                return ClaimOutcome(fid, ClaimStatus.CLAIMED, held, self.info[fid])
            if held.control_id == spec.control_id:
                return ClaimOutcome(fid, ClaimStatus.IN_HAND, held)
            first = self._first_refusal(fid, spec, now_ms)
            return ClaimOutcome(fid, ClaimStatus.RELEASED, held, first=first)
        if fid not in self.info:
            first = self._first_refusal(fid, spec, now_ms)
            return ClaimOutcome(fid, ClaimStatus.UNKNOWN, first=first)
        self._take(fid, spec, now_ms + lease_ms)
        return ClaimOutcome(fid, ClaimStatus.CLAIMED, spec, self.info[fid])

    def _first_refusal(self, fid: str, spec: ReleaseSpec, now_ms: int) -> bool:
        member = f"{fid} {spec.control_id}"
        if member in self.refused:
            return False
        self.refused[member] = now_ms
        return True

    def _take(self, fid: str, spec: ReleaseSpec, until_ms: int) -> None:
        self.releases[fid] = spec
        self.leases[fid] = until_ms
        self.expiry.pop(fid, None)

    async def due(
        self, now_ms: int, lease_ms: int, limit: int, expired: ReleaseSpec
    ) -> list[ClaimOutcome]:
        out = []
        for fid in _oldest(self.leases, now_ms, limit):
            self.leases[fid] = now_ms + lease_ms
            out.append(ClaimOutcome(fid, ClaimStatus.CLAIMED, self.releases[fid], self.info[fid]))
        for fid in _oldest(self.expiry, now_ms, limit - len(out)):
            self._take(fid, expired, now_ms + lease_ms)
            out.append(ClaimOutcome(fid, ClaimStatus.CLAIMED, expired, self.info[fid]))
        return out

    async def done(self, freeze_ids: Sequence[str], now_ms: int, retention_ms: int) -> int:
        n = 0
        for fid in freeze_ids:
            if self.leases.pop(fid, None) is not None:
                self.info.pop(fid, None)
                self.expiry.pop(fid, None)
                self.released_at[fid] = now_ms
                n += 1
        for fid in _oldest(self.released_at, now_ms - retention_ms, TRIM_BATCH):
            del self.released_at[fid]
            self.releases.pop(fid, None)
        floor = now_ms - retention_ms
        self.refused = {m: t for m, t in self.refused.items() if t > floor}
        return n


# Forgotten releases per `done` call at most (the script's bound on its work).
TRIM_BATCH = 256


def _oldest(scores: dict[str, int], upto: int, limit: int) -> list[str]:
    """Members scored at or below `upto`, lowest score first (ZRANGEBYSCORE
    order: score, then member), at most `limit`."""
    if limit <= 0:
        return []
    return sorted((m for m, s in scores.items() if s <= upto), key=lambda m: (scores[m], m))[:limit]
