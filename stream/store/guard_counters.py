"""The counts behind the guardrails (detectors.guardrails), shared by every
worker through the store: distinct frozen entities per rule and 10-minute
bucket with 7 days of per-bucket history, and the circuit breaker's fund
freezes, frozen value and active merchants per bucket.

Each claim is judged and counted in one atomic step (a Lua script on
Redis), so two workers can never both take a budget's last slot. A claim
is idempotent: the same subject (budget) or freeze id (breaker) claimed
again in its bucket is admitted again without counting twice, so a batch
retried after a crash decides the same. Once a claim is refused the
budget (or breaker) stays refused for its generation, in the store, for
every worker, before the control record saying so has been read back.

`MemoryGuardCounters` is the in-memory twin of freeze_budget.lua and
breaker.lua, with one difference: it counts active merchants exactly,
where Redis' HyperLogLog estimates them (within about 1%).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from detectors.guardrails import BREAKER_BUCKETS, HISTORY_BUCKETS, BreakerLimits

__all__ = [
    "BreakerClaim",
    "BreakerOutcome",
    "BudgetClaim",
    "BudgetOutcome",
    "GuardCounters",
    "MemoryGuardCounters",
    "Refusal",
]


@dataclass(frozen=True, slots=True)
class BudgetClaim:
    rule_id: str
    generation: str  # detectors.guardrails.rule_generation
    bucket: int
    subject: str  # `<type>:<id>` of the entity frozen
    budget: int


@dataclass(frozen=True, slots=True)
class BudgetOutcome:
    admitted: bool
    counted: int  # distinct subjects counted in the bucket (after this claim)


class Refusal(StrEnum):
    TRIPPED = "tripped"  # already tripped in this generation
    COUNT = "count"  # one freeze more than the hour allows
    VALUE = "value"  # more payout value than the currency's cap


@dataclass(frozen=True, slots=True)
class BreakerClaim:
    generation: str  # detectors.guardrails.breaker_generation
    bucket: int
    freeze_id: str
    amount_minor: int  # the payout value the freeze holds (0: unknown)
    currency: str | None


@dataclass(frozen=True, slots=True)
class BreakerOutcome:
    admitted: bool
    freezes: int  # fund freezes counted in the trailing hour, before this one
    active_merchants: int
    limit: int
    value: int  # in the claim's currency, before this one
    refusal: Refusal | None = None


class GuardCounters(Protocol):
    async def claim_budget(self, claims: Sequence[BudgetClaim]) -> list[BudgetOutcome]:
        """Judged and counted in order, each atomically; aligned with `claims`."""

    async def budget_history(self, rule_id: str, bucket: int) -> list[int]:
        """Distinct subjects counted in each non-empty bucket of the
        HISTORY_BUCKETS before `bucket`."""

    async def note_merchants(self, bucket: int, merchants: Collection[str]) -> None:
        """Merchants with events in `bucket` (the breaker's active merchants)."""

    async def claim_breaker(
        self, claims: Sequence[BreakerClaim], limits: BreakerLimits
    ) -> list[BreakerOutcome]:
        """Judged and counted in order, each atomically; aligned with `claims`."""


@dataclass(slots=True)
class _Rule:
    subjects: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    demoted: set[str] = field(default_factory=set)  # generations refused
    history: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Generation:
    freezes: dict[int, set[str]] = field(default_factory=dict)
    value: dict[tuple[int, str], int] = field(default_factory=dict)
    tripped: bool = False


class MemoryGuardCounters:
    def __init__(self) -> None:
        self._rules: dict[str, _Rule] = {}
        self._breaker: dict[str, _Generation] = {}
        self._active: dict[int, set[str]] = {}

    async def claim_budget(self, claims: Sequence[BudgetClaim]) -> list[BudgetOutcome]:
        return [self._budget(c) for c in claims]

    def _budget(self, c: BudgetClaim) -> BudgetOutcome:
        rule = self._rules.setdefault(c.rule_id, _Rule())
        subjects = rule.subjects.setdefault((c.generation, c.bucket), set())
        if c.subject in subjects:
            return BudgetOutcome(True, len(subjects))
        if c.generation in rule.demoted or len(subjects) >= c.budget:
            rule.demoted.add(c.generation)
            return BudgetOutcome(False, len(subjects))
        subjects.add(c.subject)
        rule.history[c.bucket] = rule.history.get(c.bucket, 0) + 1
        for old in [b for b in rule.history if b <= c.bucket - HISTORY_BUCKETS]:
            del rule.history[old]
        return BudgetOutcome(True, len(subjects))

    async def budget_history(self, rule_id: str, bucket: int) -> list[int]:
        rule = self._rules.get(rule_id)
        if rule is None:
            return []
        return [n for b, n in rule.history.items() if bucket - HISTORY_BUCKETS <= b < bucket]

    async def note_merchants(self, bucket: int, merchants: Collection[str]) -> None:
        self._active.setdefault(bucket, set()).update(merchants)

    async def claim_breaker(
        self, claims: Sequence[BreakerClaim], limits: BreakerLimits
    ) -> list[BreakerOutcome]:
        return [self._breaker_claim(c, limits) for c in claims]

    def _breaker_claim(self, c: BreakerClaim, limits: BreakerLimits) -> BreakerOutcome:
        g = self._breaker.setdefault(c.generation, _Generation())
        window = range(c.bucket - BREAKER_BUCKETS + 1, c.bucket + 1)
        freezes = sum(len(g.freezes.get(b, ())) for b in window)
        active = len(set().union(*(self._active.get(b, set()) for b in window)))
        limit = limits.freeze_limit(active)
        currency = c.currency or ""
        value = sum(g.value.get((b, currency), 0) for b in window)
        counts = (freezes, active, limit, value)
        if c.freeze_id in g.freezes.get(c.bucket, ()):
            return BreakerOutcome(True, *counts)
        refusal = _refusal(g.tripped, freezes + 1 > limit, limits.cap(c.currency), value, c)
        if refusal is not None:
            g.tripped = True
            return BreakerOutcome(False, *counts, refusal)
        g.freezes.setdefault(c.bucket, set()).add(c.freeze_id)
        if c.currency is not None and c.amount_minor > 0:
            key = (c.bucket, c.currency)
            g.value[key] = g.value.get(key, 0) + c.amount_minor
        return BreakerOutcome(True, *counts)


def _refusal(
    tripped: bool, over_count: bool, cap: int | None, value: int, c: BreakerClaim
) -> Refusal | None:
    if tripped:
        return Refusal.TRIPPED
    if over_count:
        return Refusal.COUNT
    if cap is not None and value + c.amount_minor > cap:
        return Refusal.VALUE
    return None
