"""Redis backend of GuardCounters (stream.store.guard_counters): the Lua
scripts freeze_budget.lua, breaker.lua and active_merchants.lua, called
through the RedisStore's script runner (its error mapping, script reload
and latency observer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from importlib import resources
from typing import Any

import orjson

from detectors.guardrails import BREAKER_BUCKETS, HISTORY_BUCKETS, BreakerLimits
from stream.store import keys
from stream.store.guard_counters import (
    BreakerClaim,
    BreakerOutcome,
    BudgetClaim,
    BudgetOutcome,
    Refusal,
)

__all__ = ["GUARD_SCRIPTS", "RedisGuardCounters"]

Eval = Callable[[str, list[str], list[Any]], Awaitable[Any]]
# History is kept a little longer than it is read, so its keys outlive a slow week.
TTL_S = 8 * 86_400
MEMBERS_PER_CALL = 1000


def _lua(name: str) -> str:
    return resources.files("stream.store").joinpath("lua", name).read_text(encoding="utf-8")


GUARD_SCRIPTS = {
    "freeze_budget": _lua("freeze_budget.lua"),
    "breaker": _lua("breaker.lua"),
    "active_merchants": _lua("active_merchants.lua"),
    "budget_history": _lua("budget_history.lua"),
}


class RedisGuardCounters:
    def __init__(self, namespace: str, hasher: keys.KeyHasher, run: Eval) -> None:
        self._ns = namespace
        self._hasher = hasher
        self._run = run

    async def claim_budget(self, claims: Sequence[BudgetClaim]) -> list[BudgetOutcome]:
        """One call per rule (its own slot), claims in their order within it."""
        by_rule: dict[str, list[int]] = {}
        for i, c in enumerate(claims):
            by_rule.setdefault(c.rule_id, []).append(i)
        out: list[BudgetOutcome | None] = [None] * len(claims)
        for rule_id, where in by_rule.items():
            units = [
                [
                    keys.guard_generation(claims[i].generation),
                    claims[i].bucket,
                    self._hasher.member(claims[i].subject),
                    claims[i].budget,
                ]
                for i in where
            ]
            reply = await self._run(
                "freeze_budget",
                [keys.freeze_budget(self._ns, rule_id)],
                [orjson.dumps(units), HISTORY_BUCKETS, TTL_S],
            )
            for i, (admitted, counted) in zip(where, reply, strict=True):
                out[i] = BudgetOutcome(bool(admitted), int(counted))
        return [o for o in out if o is not None]

    async def budget_history(self, rule_id: str, bucket: int) -> list[int]:
        key = keys.freeze_budget(self._ns, rule_id) + ":hist"
        flat = await self._run("budget_history", [key], [])
        pairs = zip(flat[::2], flat[1::2], strict=True)
        return [int(n) for b, n in pairs if bucket - HISTORY_BUCKETS <= int(b) < bucket]

    async def note_merchants(self, bucket: int, merchants: Collection[str]) -> None:
        key = f"{keys.breaker(self._ns)}:active:{bucket}"
        members = [self._hasher.member(m) for m in sorted(merchants)]
        for i in range(0, len(members), MEMBERS_PER_CALL):
            chunk = members[i : i + MEMBERS_PER_CALL]
            await self._run("active_merchants", [key], [TTL_S, *chunk])

    async def claim_breaker(
        self, claims: Sequence[BreakerClaim], limits: BreakerLimits
    ) -> list[BreakerOutcome]:
        if not claims:
            return []
        units = [
            [
                keys.guard_generation(c.generation),
                c.bucket,
                c.freeze_id,
                c.amount_minor,
                c.currency or "",
                -1 if (cap := limits.cap(c.currency)) is None else cap,
            ]
            for c in claims
        ]
        reply = await self._run(
            "breaker",
            [keys.breaker(self._ns)],
            [
                orjson.dumps(units),
                repr(limits.freeze_share),
                limits.min_freezes,
                BREAKER_BUCKETS,
                TTL_S,
            ],
        )
        return [
            BreakerOutcome(
                bool(admitted),
                int(freezes),
                int(active),
                int(limit),
                int(value),
                Refusal(refusal.decode()) if refusal else None,
            )
            for admitted, freezes, active, limit, value, refusal in reply
        ]
