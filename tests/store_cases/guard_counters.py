"""The guardrails' shared counts on either backend: a rule's freeze budget
(distinct subjects per bucket, sticky refusal, idempotent re-claims, the
7-day history) and the circuit breaker (trailing-hour freezes against the
share of active merchants, per-currency value caps, sticky trip, a new
generation starting afresh), including two claimants racing for a budget's
last slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from detectors.guardrails import BREAKER_BUCKETS, HISTORY_BUCKETS, BreakerLimits
from stream.store.guard_counters import BreakerClaim, BudgetClaim, GuardCounters, Refusal
from tests.store_cases.backends import Stores

B = 2_900_000  # a 10-minute bucket number (event time ~2025)


def budget(
    subject: str, bucket: int = B, n: int = 3, gen: str = "0", rule: str = "r1"
) -> BudgetClaim:
    return BudgetClaim(rule, gen, bucket, f"merchant:{subject}", n)


def fund(
    freeze_id: str, bucket: int = B, amount: int = 0, currency: str | None = None, gen: str = "0"
) -> BreakerClaim:
    return BreakerClaim(gen, bucket, freeze_id, amount, currency)


def limits(minimum: int = 2, share: float = 0.1, **caps: int) -> BreakerLimits:
    return BreakerLimits(share, minimum, caps)


class GuardCounterCases:
    @pytest.fixture
    async def counters(self, stores: Stores) -> AsyncIterator[GuardCounters]:
        async with stores.scratch(stores.settings()) as store:
            yield store.guard_counters()

    async def test_a_budget_admits_distinct_subjects_up_to_it_then_refuses_for_good(
        self, counters: GuardCounters
    ) -> None:
        claims = [budget("a"), budget("b"), budget("a"), budget("c"), budget("d"), budget("a")]
        got = [(o.admitted, o.counted) for o in await counters.claim_budget(claims)]
        # `a` again is the same subject (a retried batch): admitted, not counted twice.
        assert got == [(True, 1), (True, 2), (True, 2), (True, 3), (False, 3), (True, 3)]
        # Refused once, the generation stays refused, even in a later, empty bucket ...
        (later,) = await counters.claim_budget([budget("e", bucket=B + 1)])
        assert not later.admitted and later.counted == 0
        # ... until a new generation (a rule-mode record) gives a whole budget again;
        # other rules never shared it.
        fresh = await counters.claim_budget([budget("e", gen="g2"), budget("e", rule="r2")])
        assert [o.admitted for o in fresh] == [True, True]
        print(
            f"budget 3: claims {[a for a, _ in got]}, later bucket refused, new generation admitted"
        )

    async def test_the_history_counts_admitted_subjects_per_bucket_for_seven_days(
        self, counters: GuardCounters
    ) -> None:
        old = B - HISTORY_BUCKETS
        claims = [budget("x", bucket=old, n=10)]
        claims += [budget(s, bucket=B - 3, n=10) for s in "abc"]
        claims += [budget(s, bucket=B - 1, n=10) for s in "ab"]
        claims += [budget("z", bucket=B, n=10)]
        await counters.claim_budget(claims)
        assert sorted(await counters.budget_history("r1", B)) == [2, 3]
        assert sorted(await counters.budget_history("r1", B + 1)) == [1, 2, 3]
        assert await counters.budget_history("nobody", B) == []

    async def test_two_claimants_never_both_take_the_last_slot(
        self, counters: GuardCounters
    ) -> None:
        await counters.claim_budget([budget("a", n=2)])
        one, two = await asyncio.gather(
            counters.claim_budget([budget("b", n=2)]), counters.claim_budget([budget("c", n=2)])
        )
        assert sorted([one[0].admitted, two[0].admitted]) == [False, True]

    async def test_the_breaker_allows_the_larger_of_the_minimum_and_the_share(
        self, counters: GuardCounters
    ) -> None:
        await counters.note_merchants(B - 2, [f"m{i}" for i in range(20)])
        await counters.note_merchants(B, [f"m{i}" for i in range(10, 40)])  # 40 distinct in all
        claims = [fund(f"fz{i}") for i in range(5)]
        got = await counters.claim_breaker(claims, limits(minimum=2, share=0.1))
        assert [o.admitted for o in got] == [True] * 4 + [False]
        assert (got[4].freezes, got[4].active_merchants, got[4].limit) == (4, 40, 4)
        assert got[4].refusal is Refusal.COUNT
        # tripped for good in its generation: an already counted freeze is still admitted
        again = await counters.claim_breaker([fund("fz0"), fund("fz9", bucket=B + 1)], limits())
        assert [o.admitted for o in again] == [True, False]
        assert again[1].refusal is Refusal.TRIPPED
        (reset,) = await counters.claim_breaker([fund("fz9", gen="reset-1")], limits())
        assert reset.admitted and reset.freezes == 0
        print(f"breaker: 40 active merchants x 0.1 -> limit {got[4].limit}; the 5th refused")

    async def test_the_breaker_counts_the_trailing_hour_only(self, counters: GuardCounters) -> None:
        old = B - BREAKER_BUCKETS
        three = limits(minimum=3)
        await counters.claim_breaker([fund(f"old{i}", bucket=old) for i in range(3)], three)
        got = await counters.claim_breaker([fund(f"new{i}") for i in range(3)], three)
        assert [o.admitted for o in got] == [True, True, True]
        assert [o.freezes for o in got] == [0, 1, 2]

    async def test_the_value_cap_is_per_currency(self, counters: GuardCounters) -> None:
        claims = [
            fund("e1", amount=600, currency="EUR"),
            fund("j1", amount=90_000, currency="JPY"),  # no cap for JPY
            fund("e2", amount=300, currency="EUR"),
            fund("e3", amount=200, currency="EUR"),
        ]
        got = await counters.claim_breaker(claims, limits(minimum=100, EUR=1000))
        assert [o.admitted for o in got] == [True, True, True, False]
        assert got[3].value == 900 and got[3].refusal is Refusal.VALUE
