"""Enforcement that protects itself: each rule's freeze budget and the
global circuit breaker, as pure arithmetic and the control records they
publish (stream.enforcement_guard does the counting in the store).

Time is **event time**: a freeze counts in the 10-minute bucket of the
event that triggered it, so a backtest of last week's traffic demotes a
rule and trips the breaker at the same events as the live workers did,
and a worker catching up on a backlog judges each bucket as it would have
live (wall time would crowd an hour of backlog into one bucket and demote
rules that were fine).

- A rule's **freeze budget** is the number of distinct entities (freeze
  subjects) it may freeze in one 10-minute bucket: its rule file's
  `guardrail.freeze_budget_10m`, else max(5, 3 x the p99 of its distinct
  frozen entities per bucket over the trailing 7 days, 1008 buckets, a
  bucket without freezes counting 0). The freeze that would exceed it is not
  made, and the rule is demoted to shadow with a `rule-mode` record (actor
  `guardrail`) so every worker agrees.
- The **breaker** trips when the fund freezes of the trailing hour (the
  current and five previous buckets) would exceed max(min_freezes,
  floor(share x active merchants)), active merchants being the distinct
  merchants with events in the same buckets, or when the payout value they
  hold would exceed a currency's cap. It then stays tripped (a `breaker`
  record, actor `breaker`) until a human resets it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from detectors.control import (
    Breaker,
    BreakerState,
    ControlKind,
    Provenance,
    RuleMode,
    RuleModeSetting,
    control_key,
)
from detectors.control_snapshot import ControlSnapshot
from detectors.decisions import deterministic_id
from detectors.rules import Rule
from detectors.timestamps import format_rfc3339_ms

__all__ = [
    "BREAKER_ACTOR",
    "BREAKER_BUCKETS",
    "BUCKET_MS",
    "GUARDRAIL_ACTOR",
    "HISTORY_BUCKETS",
    "MIN_BUDGET",
    "BreakerLimits",
    "breaker_generation",
    "bucket_of",
    "default_budget",
    "demotion",
    "freeze_budget",
    "p99",
    "rule_generation",
    "trip",
]

BUCKET_MS = 600_000  # 10 minutes
HISTORY_BUCKETS = 7 * 24 * 6  # 1008: seven days of buckets
BREAKER_BUCKETS = 6  # the breaker's trailing hour
MIN_BUDGET = 5
BUDGET_FACTOR = 3
GUARDRAIL_ACTOR = "guardrail"
BREAKER_ACTOR = "breaker"
NO_GENERATION = "0"


def bucket_of(at_ms: int) -> int:
    return at_ms // BUCKET_MS


def p99(counts: Sequence[int], buckets: int = HISTORY_BUCKETS) -> int:
    """Nearest-rank 99th percentile of `buckets` buckets, of which `counts`
    are the non-empty ones (the rest count 0)."""
    values = sorted(counts)[-buckets:]
    values = [0] * (buckets - len(values)) + values
    return values[math.ceil(0.99 * buckets) - 1]


def default_budget(history: Sequence[int]) -> int:
    return max(MIN_BUDGET, BUDGET_FACTOR * p99(history))


def freeze_budget(rule: Rule, history: Sequence[int]) -> int:
    """The rule file's budget, else the default from the rule's history."""
    configured = rule.guardrail.freeze_budget_10m
    return configured if configured is not None else default_budget(history)


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    """`freeze_share`: fund freezes per hour allowed per active merchant;
    `min_freezes`: never trips below this many (a quiet hour has few active
    merchants); `value_caps`: per currency, the payout value (minor units)
    fund freezes may hold per hour; a currency not named has no value cap."""

    freeze_share: float = 0.01
    min_freezes: int = 20
    value_caps: Mapping[str, int] = field(default_factory=dict)

    def freeze_limit(self, active_merchants: int) -> int:
        return max(self.min_freezes, math.floor(self.freeze_share * active_merchants))

    def cap(self, currency: str | None) -> int | None:
        return None if currency is None else self.value_caps.get(currency)


def rule_generation(snapshot: ControlSnapshot, rule_id: str) -> str:
    """The rule's budget counts start afresh with each `rule-mode` record (a
    human re-enabling a demoted rule gives it a whole budget again)."""
    record = snapshot.records.get(control_key(ControlKind.RULE_MODE.value, rule_id))
    return record.meta.control_id if record is not None else NO_GENERATION


def breaker_generation(snapshot: ControlSnapshot) -> str:
    """A reset re-arms the breaker with counts from zero."""
    record = snapshot.breaker
    return record.meta.control_id if record is not None else NO_GENERATION


def demotion(
    rule_id: str, generation: str, bucket: int, counted: int, budget: int, now_ms: int
) -> RuleMode:
    """The `rule-mode` record that demotes a rule over its budget. Its id is
    a digest of what was exceeded, so two workers refusing at once publish
    the same command."""
    start = format_rfc3339_ms(bucket * BUCKET_MS)
    reason = (
        f"freeze budget exceeded: {counted} distinct entities frozen in the 10 minutes "
        f"from {start} (event time), budget {budget}; another freeze was refused"
    )
    control_id = deterministic_id("gr", rule_id, generation, bucket)
    return RuleMode(
        rule_id,
        RuleModeSetting.SHADOW,
        Provenance(control_id, GUARDRAIL_ACTOR, reason, now_ms),
    )


def trip(generation: str, bucket: int, why: str, now_ms: int) -> Breaker:
    """The `breaker` record the workers publish when it trips."""
    start = format_rfc3339_ms((bucket - BREAKER_BUCKETS + 1) * BUCKET_MS)
    reason = f"circuit breaker tripped: {why} in the hour from {start} (event time)"
    control_id = deterministic_id("br", generation, bucket)
    return Breaker(BreakerState.TRIPPED, Provenance(control_id, BREAKER_ACTOR, reason, now_ms))
