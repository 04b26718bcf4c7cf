"""Releasing freezes: by a `release` control record, or at expiry; each
exactly once across every worker, as far as crashes allow.

Every worker reads the whole control topic, so every worker sees each
`release` record, and every worker sweeps for expired freezes. The book of
active freezes (stream.store.freezes) decides who publishes: a worker
claims a release atomically, with a lease, publishes it, waits for Kafka to
acknowledge it, then marks it done. A worker that dies in between leaves a
lapsed lease, and the next sweep of any worker publishes the same release
again, with the same id and bytes (detectors.releases): at least once, with
an id consumers de-duplicate on.

Expiry is judged against the worker's wall clock, not event time: the
freeze's consumers enforce `expires_at` against wall time, so the release
tells them what their clock already says, and a quiet input topic cannot
hold a release back. (Expiry of list entries and snoozes is event time:
those steer decisions, which are event-time judgements.)

A release command with nothing to release (an unknown freeze id, or one
released already by another command or by its expiry) publishes nothing;
the first worker to meet it logs and counts it. The operator's record is
on the audit topic either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from detectors.control import ControlKind, Release
from detectors.control_snapshot import ControlSnapshot
from detectors.decisions import INCIDENT_EPOCH_MS, Freeze, combine_freezes
from detectors.release_types import ReleaseType
from detectors.releases import EXPIRED, ActiveFreeze, FreezeRelease, ReleaseSpec, release_for
from detectors.rules import ActionKind
from stream.metrics import Metrics
from stream.settings import Settings
from stream.store.freezes import ClaimOutcome, ClaimStatus, FreezeBook, Registration

__all__ = [
    "CLAIM_BATCH",
    "DUE_BATCH",
    "LEASE_MS",
    "RELEASE_INTERVAL_S",
    "WRONG_FREEZE",
    "Publish",
    "Refusal",
    "ReleaseDesk",
    "ReleaseTimer",
    "Released",
    "Round",
    "acked_publisher",
    "retention_ms",
    "spec_of",
    "unreleased",
]

log = logging.getLogger(__name__)
RELEASE_INTERVAL_S = 1.0  # how often each worker looks for releases to publish
# How long a claim holds before another worker may take it over: longer
# than a publish normally takes, short enough that a crash delays a release
# by seconds, not minutes.
LEASE_MS = 30_000
DUE_BATCH = 200  # releases claimed per sweep at most
CLAIM_BATCH = 500  # release commands judged per store call at most

# (topic, key, value), returning once Kafka acknowledged the record.
Publish = Callable[[str, bytes, bytes], Awaitable[None]]
# (freeze id, wall ms) of a freeze released because it was wrong.
Released = Callable[[str, int], Awaitable[None]]
# Releases that say the freeze was wrong (not an expiry, a manual end, a
# rule rollback or a breaker reversal).
WRONG_FREEZE = frozenset({ReleaseType.FALSE_POSITIVE, ReleaseType.APPEAL_UPHELD})


def retention_ms(settings: Settings) -> int:
    """How long a done release is remembered: past the life of the incident
    that raised the freeze (an incident is kept up to an incident epoch, or
    the duplicate horizon, plus its window and cooldown), so a redelivered
    trigger of that incident cannot freeze again. Doubled for that slack."""
    return 2 * max(settings.dedup_horizon_s * 1000, INCIDENT_EPOCH_MS)


async def unreleased(
    book: FreezeBook, by_event: dict[str, list[Freeze]]
) -> tuple[dict[str, list[Freeze]], int]:
    """Register the freezes about to be published (one per kind and subject
    of each event, as combine_freezes makes them) and drop those whose id
    was released: a released freeze is never published again, not by a
    redelivered trigger, a retried batch or a replay. Returns the freezes
    left, by event, and how many were dropped."""
    combined = {event: combine_freezes(fs) for event, fs in by_event.items()}
    flat = [f for fs in combined.values() for f in fs]
    marks = await book.register([ActiveFreeze.of(f) for f in flat])
    released = {f.freeze_id for f, m in zip(flat, marks, strict=True) if m is Registration.RELEASED}
    kept = {e: [f for f in fs if f.freeze_id not in released] for e, fs in combined.items()}
    return kept, sum(len(fs) for fs in combined.values()) - sum(len(fs) for fs in kept.values())


class Refusal(StrEnum):
    UNKNOWN = "unknown"
    ALREADY_RELEASED = "already_released"


@dataclass(slots=True)
class Round:
    """What one round did (the worker turns it into metrics)."""

    published: list[FreezeRelease] = field(default_factory=list)
    refused: dict[Refusal, int] = field(default_factory=dict)
    failed: bool = False

    def record(self, metrics: Metrics) -> None:
        for release in self.published:
            kind = release.freeze.kind.value
            metrics.releases.labels(kind, release.spec.release_type.value).inc()
        for refusal, n in self.refused.items():
            metrics.releases_refused.labels(refusal.value).inc(n)
        if self.failed:
            metrics.release_errors.inc()


class ReleaseDesk:
    def __init__(
        self,
        settings: Settings,
        book: FreezeBook,
        publish: Publish,
        lease_ms: int = LEASE_MS,
        on_released: Released | None = None,
    ) -> None:
        """`on_released`: told of each freeze released as a false positive or
        on appeal (its id, the wall time) before its release is published,
        so a retry after a crash tells it again (stream.health_feed)."""
        self._on_released = on_released
        self._topics = settings.topics
        self._book = book
        self._publish = publish
        self._lease_ms = lease_ms
        self._retention_ms = retention_ms(settings)
        self._seen: ControlSnapshot | None = None  # the snapshot whose releases were all judged
        self._judged: dict[str, str] = {}  # record key → control id judged

    async def round(self, snapshot: ControlSnapshot, now_ms: int) -> Round:
        """Release what the control snapshot asks for and what has expired.
        Never raises: a failure is logged and what is left is retried next round."""
        result = Round()
        try:
            if snapshot is not self._seen:
                await self._commands(snapshot, now_ms, result)
                self._seen = snapshot
            await self._expiries(now_ms, result)
        except Exception:
            log.exception("releasing freezes failed; retried in %.0fs", RELEASE_INTERVAL_S)
            result.failed = True
        return result

    def _pending(self, snapshot: ControlSnapshot, now_ms: int) -> list[Release]:
        """Release records not judged yet by this worker. Older than the
        retention: whatever they asked is long settled (and forgotten)."""
        oldest = now_ms - self._retention_ms
        return [
            r
            for r in snapshot.of_kind(ControlKind.RELEASE)
            if isinstance(r, Release)
            and self._judged.get(r.key()) != r.meta.control_id
            and r.meta.issued_at_ms >= oldest
        ]

    async def _commands(self, snapshot: ControlSnapshot, now_ms: int, result: Round) -> None:
        pending = self._pending(snapshot, now_ms)
        for start in range(0, len(pending), CLAIM_BATCH):
            chunk = pending[start : start + CLAIM_BATCH]
            outcomes = await self._book.claim(
                [(r.freeze_id, spec_of(r)) for r in chunk], now_ms, self._lease_ms
            )
            for record, outcome in zip(chunk, outcomes, strict=True):
                await self._judge(record, outcome, now_ms, result)
                self._judged[record.key()] = record.meta.control_id

    async def _judge(
        self, record: Release, outcome: ClaimOutcome, now_ms: int, result: Round
    ) -> None:
        if outcome.status is ClaimStatus.CLAIMED:
            await self._release([outcome], now_ms, result)
            return
        if outcome.status is ClaimStatus.IN_HAND or not outcome.first:
            return
        refusal = (
            Refusal.UNKNOWN if outcome.status is ClaimStatus.UNKNOWN else Refusal.ALREADY_RELEASED
        )
        result.refused[refusal] = result.refused.get(refusal, 0) + 1
        held = outcome.spec.release_type.value if outcome.spec else "none"
        log.warning(
            "release of %s by %s [%s] refused: %s (released by: %s); nothing published",
            record.freeze_id,
            record.meta.actor,
            record.meta.control_id,
            refusal.value,
            held,
        )

    async def _expiries(self, now_ms: int, result: Round) -> None:
        while claims := await self._book.due(now_ms, self._lease_ms, DUE_BATCH, EXPIRED):
            await self._release(claims, now_ms, result)
            if len(claims) < DUE_BATCH:
                return

    async def _release(self, claims: list[ClaimOutcome], now_ms: int, result: Round) -> None:
        """Publish each claimed release, then mark them done: a crash between
        the two leaves a lease that lapses and another worker publishes the
        same release again."""
        released = []
        for claim in claims:
            if claim.freeze is None or claim.spec is None:
                log.error("freeze %s claimed without its record: dropped", claim.freeze_id)
            else:
                release = release_for(claim.freeze, claim.spec)
                if self._on_released and claim.spec.release_type in WRONG_FREEZE:
                    await self._on_released(claim.freeze_id, now_ms)
                await self._publish(self._topic(claim.freeze), release.key(), release.to_json())
                released.append(release)
            await self._book.done([claim.freeze_id], now_ms, self._retention_ms)
        result.published += released

    def _topic(self, freeze: ActiveFreeze) -> str:
        if freeze.kind is ActionKind.FUND_FREEZE:
            return self._topics.fund_freezes
        return self._topics.benefit_freezes


def spec_of(record: Release) -> ReleaseSpec:
    meta = record.meta
    return ReleaseSpec(
        record.release_type,
        record.reason_code,
        meta.actor,
        meta.reason,
        meta.control_id,
        meta.issued_at_ms,
    )


def acked_publisher(channels: Mapping[str, Any]) -> Publish:
    """Publish through the worker's faust output topics (by name), returning
    once Kafka acknowledged the record: a release is marked done only after."""

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        sent = await channels[topic].send(key=key, value=value, force=True)
        await sent

    return publish


class ReleaseTimer:
    """The worker's timer: one round of `desk` per tick once the worker may
    decide (`ready`), under its current control snapshot, at wall time."""

    def __init__(
        self,
        desk: ReleaseDesk,
        ready: Callable[[], bool],
        snapshot: Callable[[], ControlSnapshot],
        metrics: Metrics,
    ) -> None:
        self._desk, self._ready, self._snapshot, self._metrics = desk, ready, snapshot, metrics

    async def tick(self) -> None:
        if self._ready():
            done = await self._desk.round(self._snapshot(), int(time.time() * 1000))
            done.record(self._metrics)
