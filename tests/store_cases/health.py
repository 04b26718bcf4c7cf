"""The merchant-health ledger (stream.store.health_ledger) on both backends:
violations recorded once by id, removed by id whichever merchant holds
them, and the last published snapshot kept per merchant."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from detectors.health_bands import BandHistory
from detectors.health_model import Band
from detectors.health_score import Violation, ViolationSource
from detectors.rules import Severity
from stream.store.health_ledger import HealthLedger, LedgerEntry, MerchantHealthState
from tests.store_cases.backends import Stores

T0 = 1_800_000_000_000
DAY = 86_400_000


def entry(n: int, merchant: str = "m-1", severity: Severity = Severity.HIGH) -> LedgerEntry:
    violation = Violation(
        f"fz_{n:032x}", ViolationSource.FREEZE, severity, T0 + n, (f"al_{n:032x}",), "r1"
    )
    return LedgerEntry(merchant, violation, 200, T0 + n + 180 * DAY)


class HealthLedgerCases:
    @pytest.fixture
    async def ledger(self, stores: Stores) -> AsyncIterator[HealthLedger]:
        async with stores.scratch(stores.settings()) as store:
            yield store.health_ledger()

    async def test_a_merchant_without_state_reads_empty(self, ledger: HealthLedger) -> None:
        assert await ledger.read(["m-1", "m 2"]) == {
            "m-1": MerchantHealthState(),
            "m 2": MerchantHealthState(),
        }
        assert await ledger.read([]) == {}

    async def test_violations_are_recorded_once_by_id(self, ledger: HealthLedger) -> None:
        a, b, c = entry(2), entry(1), entry(3, merchant="m-2", severity=Severity.LOW)
        assert await ledger.record([a, b, c]) == [True, True, True]
        changed = LedgerEntry("m-1", a.violation, 999, a.expires_at_ms)
        assert await ledger.record([changed, a]) == [False, False]  # a retried batch adds nothing
        state = await ledger.read(["m-1", "m-2"])
        assert state["m-1"].violations == (b, a)  # by violation id, as first recorded
        assert state["m-2"].violations == (c,)

    async def test_removal_by_id_finds_the_merchant_also_when_repeated(
        self, ledger: HealthLedger
    ) -> None:
        await ledger.record([entry(1), entry(2), entry(3, merchant="m-2")])
        assert await ledger.remove([entry(3).violation.violation_id, "fz_unknown"]) == ["m-2"]
        assert await ledger.remove([entry(1).violation.violation_id]) == ["m-1"]
        # A release retried after a crash re-scores the same merchant.
        assert await ledger.remove([entry(1).violation.violation_id]) == ["m-1"]
        state = await ledger.read(["m-1", "m-2"])
        assert state["m-1"].violations == (entry(2),) and state["m-2"].violations == ()
        assert await ledger.record([entry(1)]) == [True]  # recorded again, if it happens again

    async def test_the_last_snapshot_is_kept_beside_the_violations(
        self, ledger: HealthLedger
    ) -> None:
        await ledger.record([entry(1)])
        await ledger.save({"m-1": b'{"score":800}', "m-2": b'{"score":1000}'}, {})
        await ledger.save({"m-1": b'{"score":600}\n{"records":1}\n'}, {})
        state = await ledger.read(["m-1", "m-2", "m-3"])
        # A batch reads the header line alone; the records when asked for.
        assert state["m-1"] == MerchantHealthState((entry(1),), b'{"score":600}')
        assert state["m-2"].last == b'{"score":1000}' and state["m-3"].last is None
        whole = await ledger.read(["m-1", "m-3"], records=True)
        assert whole["m-1"].records == b'{"score":600}\n{"records":1}\n'
        assert whole["m-1"].last == b'{"score":600}' and whole["m-3"].records is None

    async def test_band_counts_move_with_every_save_and_come_with_a_read(
        self, stores: Stores
    ) -> None:
        async with stores.scratch(stores.settings()) as store:
            one, other = store.health_ledger(), store.health_ledger()  # two workers
            await one.save({}, {"healthy": 2})
            await other.save({}, {"healthy": -1, "at_risk": 1, "critical": 0})
            await one.read(["m-1"])
            assert one.band_counts == {"healthy": 1, "at_risk": 1}

    async def test_alerts_are_kept_once_by_id_until_forgotten(self, ledger: HealthLedger) -> None:
        await ledger.record_alerts([("m-1", "al_2", T0 + 2), ("m-1", "al_1", T0 + 1)])
        await ledger.record_alerts([("m-1", "al_1", T0 + 9), ("m-2", "al_3", T0 + 3)])
        state = await ledger.read(["m-1", "m-2"])
        assert state["m-1"].alerts == (("al_1", T0 + 1), ("al_2", T0 + 2))  # first time kept
        assert state["m-2"].alerts == (("al_3", T0 + 3),)
        await ledger.save({}, {}, {"m-1": ["al_1"], "m-2": []})
        state = await ledger.read(["m-1", "m-2"])
        assert state["m-1"].alerts == (("al_2", T0 + 2),) and len(state["m-2"].alerts) == 1

    async def test_the_band_history_is_read_with_the_state(self, ledger: HealthLedger) -> None:
        critical = BandHistory(((T0, Band.HEALTHY), (T0 + DAY, Band.CRITICAL)))
        await ledger.save({"m-1": b'{"score":300}'}, {}, None, {"m-1": critical})
        await ledger.record([entry(1)])  # other writes leave it alone
        await ledger.save({"m-2": b'{"score":900}'}, {}, None, {"m-2": BandHistory()})
        state = await ledger.read(["m-1", "m-2", "m-3"])
        assert {m: st.bands for m, st in state.items()} == {
            "m-1": critical, "m-2": BandHistory(), "m-3": BandHistory(),
        }  # fmt: skip
        assert len(state["m-1"].violations) == 1
