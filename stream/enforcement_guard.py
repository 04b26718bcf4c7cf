"""The guardrails in the pipeline: each freeze a batch would publish first
passes its rule's freeze budget, then (a fund freeze) the global circuit
breaker, both counted in the store (stream.store.guard_counters) so every
worker shares them; the arithmetic and the records are detectors.guardrails.

A refused freeze is not published; its alert goes out marked
`suppressed_by: guardrail` or `breaker`. The refusal also yields a control
record (the rule demoted to shadow, or the breaker tripped), which the
pipeline applies to its own snapshot at once and `on_control` publishes to
the control topic so every other worker follows. Record ids are digests of
what was exceeded: a second worker refusing at the same moment issues the
same record, and this one issues each record once.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import orjson

from detectors.control import ControlRecord
from detectors.control_snapshot import ControlSnapshot
from detectors.decisions import Alert, Freeze, Suppression
from detectors.events import Event, Payout
from detectors.guardrails import (
    BreakerLimits,
    breaker_generation,
    bucket_of,
    demotion,
    freeze_budget,
    rule_generation,
    trip,
)
from detectors.rules import ActionKind, Rule
from stream.settings import Settings
from stream.store.base import EventStore
from stream.store.guard_counters import BreakerClaim, BudgetClaim, GuardCounters

__all__ = ["ActiveMerchants", "Candidate", "EnforcementGuard", "Verdicts", "limits_from", "marked"]

log = logging.getLogger(__name__)
NOTED_BUCKETS = 8  # buckets whose noted merchants a worker remembers
FLUSH_S = 1.0  # the longest other workers wait for this one's active merchants


@dataclass(frozen=True, slots=True)
class Candidate:
    """A freeze a rule asks for, with what decided it: `at` is its alert's
    place in the batch's outputs, `held` what the control snapshot says."""

    rule: Rule
    freeze: Freeze
    alert: Alert
    event: Event
    at: int
    held: Suppression | None = None

    @property
    def bucket(self) -> int:
        return bucket_of(self.event.occurred_at_ms)


@dataclass(slots=True)
class Verdicts:
    """Per candidate (aligned): None to publish, else why not; and the
    control records the refusals call for."""

    held: list[Suppression | None]
    records: list[ControlRecord]


def limits_from(settings: Settings) -> BreakerLimits:
    caps = {code: int(value) for code, value in settings.breaker_value_caps.values}
    return BreakerLimits(settings.breaker_freeze_share, settings.breaker_min_freezes, caps)


def marked(alert: Alert, held: Suppression) -> bytes | None:
    """The alert of a freeze the guardrails held, marked why (the snapshot's
    other suppressions mark theirs before the incident is claimed, or not at all)."""
    if held not in (Suppression.GUARDRAIL, Suppression.BREAKER):
        return None
    return orjson.dumps(dataclasses.replace(alert, suppressed_by=held).to_wire())


class ActiveMerchants:
    """The merchants this worker saw per bucket, for the breaker's count of
    active merchants. Each merchant goes to the store once per bucket, and
    in one call per FLUSH_S at most (a call per batch would add a round trip
    to every batch): the breaker flushes first, so a worker's own decisions
    always count every merchant it has seen; other workers' lag by FLUSH_S."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._noted: dict[int, set[str]] = {}
        self._pending: dict[int, set[str]] = {}
        self._flushed_at = clock()

    def note(self, events: Iterable[Event]) -> None:
        for event in events:
            merchant = getattr(event, "merchant_id", None)
            bucket = bucket_of(event.occurred_at_ms)
            if merchant and merchant not in self._noted.get(bucket, ()):
                self._pending.setdefault(bucket, set()).add(merchant)

    async def flush(self, counters: GuardCounters, force: bool) -> None:
        if not self._pending or (not force and self._clock() - self._flushed_at < FLUSH_S):
            return
        for bucket in sorted(self._pending):
            merchants = self._pending[bucket]
            await counters.note_merchants(bucket, merchants)
            self._noted.setdefault(bucket, set()).update(merchants)
            del self._pending[bucket]  # only once sent: a failed call is sent again
        self._flushed_at = self._clock()
        for old in sorted(self._noted)[:-NOTED_BUCKETS]:
            del self._noted[old]


class EnforcementGuard:
    def __init__(
        self,
        settings: Settings,
        store: EventStore,
        rules: Iterable[Rule],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """The store's counters are asked for on first use. Active merchants
        are only counted when a rule can freeze funds (the breaker's only use)."""
        self._store = store
        self._fund_freezes = False
        self.follow(rules)
        self._counters: GuardCounters | None = None
        self._limits = limits_from(settings)
        self._budgets: dict[tuple[str, int], int] = {}
        self._merchants = ActiveMerchants(clock)
        self._issued: set[str] = set()
        # Publishes a record this guard issued (the worker sets it).
        self.on_control: Callable[[ControlRecord], None] | None = None

    @property
    def counters(self) -> GuardCounters:
        if self._counters is None:
            self._counters = self._store.guard_counters()
        return self._counters

    async def note_merchants(self, events: Iterable[Event]) -> None:
        """Count the batch's merchants as active in their buckets (see ActiveMerchants)."""
        if self._fund_freezes:
            self._merchants.note(events)
            await self._merchants.flush(self.counters, force=False)

    async def judge(
        self, candidates: Sequence[Candidate], control: ControlSnapshot, now_ms: int
    ) -> Verdicts:
        verdicts = Verdicts([c.held for c in candidates], [])
        if all(held is not None for held in verdicts.held):
            return verdicts
        await self._budget(candidates, control, now_ms, verdicts)
        await self._breaker(candidates, control, now_ms, verdicts)
        return verdicts

    async def _budget(
        self,
        candidates: Sequence[Candidate],
        control: ControlSnapshot,
        now_ms: int,
        verdicts: Verdicts,
    ) -> None:
        claims, where = [], []
        for i, c in enumerate(candidates):
            if c.held is not None:
                continue
            where.append(i)
            budget = await self._budget_of(c.rule, c.bucket)
            subject = f"{c.freeze.subject_type.value}:{c.freeze.subject_id}"
            generation = rule_generation(control, c.rule.rule_id)
            claims.append(BudgetClaim(c.rule.rule_id, generation, c.bucket, subject, budget))
        outcomes = await self.counters.claim_budget(claims)
        for i, claim, outcome in zip(where, claims, outcomes, strict=True):
            if outcome.admitted:
                continue
            verdicts.held[i] = Suppression.GUARDRAIL
            record = demotion(
                claim.rule_id,
                claim.generation,
                claim.bucket,
                outcome.counted,
                claim.budget,
                now_ms,
            )
            self._issue(record, verdicts)

    async def _budget_of(self, rule: Rule, bucket: int) -> int:
        """Fixed for a bucket: its history is the buckets before it."""
        if rule.guardrail.freeze_budget_10m is not None:
            return rule.guardrail.freeze_budget_10m
        key = (rule.rule_id, bucket)
        if key not in self._budgets:
            history = await self.counters.budget_history(rule.rule_id, bucket)
            self._budgets = {k: v for k, v in self._budgets.items() if k[1] >= bucket - 1}
            self._budgets[key] = freeze_budget(rule, history)
        return self._budgets[key]

    async def _breaker(
        self,
        candidates: Sequence[Candidate],
        control: ControlSnapshot,
        now_ms: int,
        verdicts: Verdicts,
    ) -> None:
        generation = breaker_generation(control)
        await self._merchants.flush(self.counters, force=True)  # count them before judging
        where = [
            i
            for i, c in enumerate(candidates)
            if verdicts.held[i] is None and c.freeze.kind is ActionKind.FUND_FREEZE
        ]
        claims = [self._breaker_claim(generation, candidates[i]) for i in where]
        outcomes = await self.counters.claim_breaker(claims, self._limits)
        for i, claim, outcome in zip(where, claims, outcomes, strict=True):
            if outcome.admitted:
                continue
            verdicts.held[i] = Suppression.BREAKER
            why = (
                f"{outcome.freezes} fund freezes, limit {outcome.limit} for "
                f"{outcome.active_merchants} active merchants"
            )
            cap = self._limits.cap(claim.currency)
            if cap is not None:
                why += f"; {outcome.value} {claim.currency} held, cap {cap}"
            self._issue(trip(generation, claim.bucket, why, now_ms), verdicts)

    def _breaker_claim(self, generation: str, c: Candidate) -> BreakerClaim:
        """The value a fund freeze holds is the triggering payout's (the
        payout it holds first); a freeze not triggered by a payout counts 0."""
        amount, currency = 0, None
        if isinstance(c.event, Payout):
            amount, currency = c.event.amount_minor, c.event.currency
        return BreakerClaim(generation, c.bucket, c.freeze.freeze_id, amount, currency)

    def _issue(self, record: ControlRecord, verdicts: Verdicts) -> None:
        """Each record once per worker (a refusal per freeze would repeat it)."""
        if record.meta.control_id in self._issued:
            return
        self._issued.add(record.meta.control_id)
        verdicts.records.append(record)
        log.warning("%s: %s", record.key(), record.meta.reason)
        if self.on_control is not None:
            self.on_control(record)

    def follow(self, rules: Iterable[Rule]) -> None:
        """Another rule set took over (a `ruleset` record, stream.active_rules):
        active merchants are counted while one of its rules can freeze funds."""
        self._fund_freezes = any(r.action.kind is ActionKind.FUND_FREEZE for r in rules)
