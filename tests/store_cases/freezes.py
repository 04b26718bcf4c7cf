"""The book of active freezes (stream.store.freezes) on both backends:
registration, claims of release commands, the expiry sweep, leases that
lapse after a crash, and how long a release is remembered."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from detectors.release_types import ReleaseType
from detectors.releases import EXPIRED, ActiveFreeze, ReleaseSpec
from detectors.rules import ActionKind
from detectors.rules_entities import EntityType
from stream.store.freezes import ClaimStatus, FreezeBook, Registration
from tests.store_cases.backends import Stores, scratch_freeze_book

NOW = 1_800_000_000_000
LEASE = 30_000
RETAIN = 86_400_000


def freeze(n: int, expires_at_ms: int = NOW + 60_000, fund: bool = False) -> ActiveFreeze:
    if fund:
        return ActiveFreeze(
            f"fz_{n:032x}", ActionKind.FUND_FREEZE, EntityType.MERCHANT, f"m-{n}",
            f"payout:p-{n}", "r1", expires_at_ms, 125_000, "EUR",
        )  # fmt: skip
    return ActiveFreeze(
        f"fz_{n:032x}", ActionKind.BENEFIT_FREEZE, EntityType.USER, f"u:{n}", "vouchers", "r1",
        expires_at_ms,
    )  # fmt: skip


def command(control_id: str, kind: ReleaseType = ReleaseType.MANUAL) -> ReleaseSpec:
    return ReleaseSpec(kind, "kyc_ok", "alice", "verified by phone", control_id, NOW - 5_000)


class FreezeBookCases:
    @pytest.fixture
    async def book(self, stores: Stores) -> AsyncIterator[FreezeBook]:
        async with scratch_freeze_book(stores) as book:
            yield book

    async def test_registration_is_idempotent_and_released_ids_stay_out(
        self, book: FreezeBook
    ) -> None:
        a, b = freeze(1), freeze(2, fund=True)
        assert await book.register([a, b]) == [Registration.NEW, Registration.NEW]
        assert await book.register([a]) == [Registration.ACTIVE]
        (claimed,) = await book.claim([(a.freeze_id, command("c1"))], NOW, LEASE)
        assert claimed.status is ClaimStatus.CLAIMED and claimed.freeze == a
        assert await book.register([a, b]) == [Registration.RELEASED, Registration.ACTIVE]
        assert await book.done([a.freeze_id], NOW, RETAIN) == 1
        assert await book.register([a]) == [Registration.RELEASED]

    async def test_one_claim_per_release_command_across_workers(self, book: FreezeBook) -> None:
        a = freeze(1)
        await book.register([a])
        spec = command("c1")
        first = await book.claim([(a.freeze_id, spec)], NOW, LEASE)
        second = await book.claim([(a.freeze_id, spec)], NOW + 1, LEASE)
        assert [o.status for o in first + second] == [ClaimStatus.CLAIMED, ClaimStatus.IN_HAND]
        assert first[0].spec == spec and second[0].spec == spec
        assert await book.done([a.freeze_id], NOW + 1, RETAIN) == 1
        assert await book.done([a.freeze_id], NOW + 2, RETAIN) == 0  # a second done: no-op
        (later,) = await book.claim([(a.freeze_id, spec)], NOW + 5, LEASE)
        assert later.status is ClaimStatus.IN_HAND and not later.first

    async def test_a_command_with_nothing_to_release_is_refused_once(
        self, book: FreezeBook
    ) -> None:
        a = freeze(1)
        await book.register([a])
        await book.claim([(a.freeze_id, command("c1"))], NOW, LEASE)
        await book.done([a.freeze_id], NOW, RETAIN)
        unknown = f"fz_{99:032x}"
        asks = [(a.freeze_id, command("c2")), (unknown, command("c3"))]
        first = await book.claim(asks, NOW + 10, LEASE)
        again = await book.claim(asks, NOW + 20, LEASE)
        assert [(o.status, o.first) for o in first] == [
            (ClaimStatus.RELEASED, True),
            (ClaimStatus.UNKNOWN, True),
        ]
        assert [(o.status, o.first) for o in again] == [
            (ClaimStatus.RELEASED, False),
            (ClaimStatus.UNKNOWN, False),
        ]
        assert first[0].spec == command("c1")  # says what released it

    async def test_expiry_is_swept_once_in_expiry_order(self, book: FreezeBook) -> None:
        late, soon, later = freeze(1, NOW + 30), freeze(2, NOW + 10), freeze(3, NOW + 99)
        await book.register([late, soon, later])
        assert await book.due(NOW + 9, LEASE, 10, EXPIRED) == []
        swept = await book.due(NOW + 30, LEASE, 10, EXPIRED)
        assert [(o.freeze, o.spec, o.status) for o in swept] == [
            (soon, EXPIRED, ClaimStatus.CLAIMED),
            (late, EXPIRED, ClaimStatus.CLAIMED),
        ]
        assert await book.due(NOW + 31, LEASE, 10, EXPIRED) == []  # held by the lease
        assert await book.done([soon.freeze_id, late.freeze_id], NOW + 31, RETAIN) == 2
        (limited,) = await book.due(NOW + 10_000, LEASE, 1, EXPIRED)
        assert limited.freeze == later

    async def test_a_lapsed_lease_hands_the_same_release_to_another_worker(
        self, book: FreezeBook
    ) -> None:
        a, b = freeze(1), freeze(2, NOW + 5)
        await book.register([a, b])
        await book.claim([(a.freeze_id, command("c1"))], NOW, LEASE)
        await book.due(NOW + 5, LEASE, 10, EXPIRED)  # b claimed; both workers then die
        assert await book.due(NOW + LEASE - 1, LEASE, 10, EXPIRED) == []
        retaken = await book.due(NOW + LEASE + 5, LEASE, 10, EXPIRED)
        assert [(o.freeze_id, o.spec) for o in retaken] == [
            (a.freeze_id, command("c1")),
            (b.freeze_id, EXPIRED),
        ]
        # A command arriving now cannot replace the release under way.
        (busy,) = await book.claim([(b.freeze_id, command("c2"))], NOW + LEASE + 6, LEASE)
        assert busy.status is ClaimStatus.RELEASED and busy.spec == EXPIRED
        # Nor can it once that lease lapses too: it takes over the expiry.
        (took,) = await book.claim([(b.freeze_id, command("c2"))], NOW + 3 * LEASE, LEASE)
        assert took.status is ClaimStatus.CLAIMED and took.spec == EXPIRED and took.freeze == b

    async def test_released_ids_are_forgotten_after_the_retention(self, book: FreezeBook) -> None:
        a, b = freeze(1), freeze(2)
        await book.register([a, b])
        await book.claim([(a.freeze_id, command("c1"))], NOW, LEASE)
        await book.done([a.freeze_id], NOW, RETAIN)
        await book.claim([(b.freeze_id, command("c2"))], NOW + RETAIN, LEASE)
        await book.done([b.freeze_id], NOW + RETAIN, RETAIN)  # trims a (done RETAIN ago)
        assert await book.register([a, b]) == [Registration.NEW, Registration.RELEASED]
