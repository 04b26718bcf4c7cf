"""The store's semantics, on either backend: aggregates equal a brute-force
recomputation whatever the arrival order (duplicates mixed in), lateness,
first sightings, readers, currencies, and incident claims."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.decisions import ALERT_ID_PLACEHOLDER, incident_epoch
from detectors.engine import AggregateRequest
from detectors.events import Topic
from detectors.rules_entities import EntityType
from detectors.windows import busiest_window_containing
from stream.store.base import (
    EventRequests,
    EventStatus,
    EventStore,
    IncidentClaim,
    IncidentStatus,
    StoreConfig,
)
from tests.incident_ids import incident_alert_id
from tests.store_cases.backends import Stores
from tests.store_cases.requests import event_requests

BUCKET = 1_000
N = 10  # buckets per window
T0 = 1_800_000_000_000
SUM = AggregateSpec(
    AggregateKind.SUM,
    frozenset({Topic.ORDERS}),
    (EntityType.USER,),
    "amount_minor",
    N * BUCKET,
    BUCKET,
)
DST = AggregateSpec(
    AggregateKind.DISTINCT,
    frozenset({Topic.ORDERS}),
    (EntityType.USER,),
    "device_id",
    N * BUCKET,
    BUCKET,
)
FIRST = AggregateSpec(AggregateKind.FIRST_SEEN, frozenset(Topic), (EntityType.USER,))
CONFIG = StoreConfig(dedup_horizon_ms=3_600_000, lateness_ms=60 * BUCKET)


def ev(
    event_id: str,
    ms: int,
    amount: int = 1,
    device: str = "d",
    user: str = "u",
    currency: str = "EUR",
) -> EventRequests:
    ids = (user,)
    return event_requests(
        event_id,
        ms,
        [
            AggregateRequest(SUM, ids, amount),
            AggregateRequest(DST, ids, device),
            AggregateRequest(FIRST, ids, 1),
        ],
        currency,
    )


def claim(
    start: int, end: int, trigger: str = "e1", pos: str = "orders/0/1", base: str = "b" * 32
) -> IncidentClaim:
    payload = b'{"alert_id":"%s"}' % ALERT_ID_PLACEHOLDER.encode()
    return IncidentClaim(
        (EntityType.USER,),
        ("u-1",),
        "r1",
        base,
        start,
        end,
        3_600_000,
        trigger,
        pos,
        payload,
        48 * 3_600_000,
        24 * 3_600_000,
        incident_epoch(end),
    )


events_strategy = st.lists(
    # Times on a half-bucket grid, so events fall on window edges.
    st.tuples(
        st.integers(0, 80).map(lambda h: h * BUCKET // 2),
        st.integers(1, 9),
        st.sampled_from("abcde"),
    ),
    min_size=1,
    max_size=25,
)
Arrival = tuple[str, int, int, str]


async def check_against_reference(store: EventStore, arrivals: list[Arrival]) -> None:
    """Apply events one by one; after each, every aggregate equals a brute-force
    recomputation over the distinct events applied so far."""
    applied: dict[str, tuple[int, int, str]] = {}
    for event_id, ms, amount, dev in arrivals:
        (obs,) = await store.apply([ev(event_id, ms, amount, dev)])
        duplicate = event_id in applied
        assert obs.status is (EventStatus.DUPLICATE if duplicate else EventStatus.NEW)
        applied[event_id] = (ms, amount, dev)
        s, d, f = (obs.values[spec.agg_id] for spec in (SUM, DST, FIRST))
        buckets: dict[int, int] = {}
        for t, a, _ in applied.values():
            buckets[t // BUCKET] = buckets.get(t // BUCKET, 0) + a
        newest = max(buckets)
        b = ms // BUCKET
        if b == newest:
            expected = sum(v for i, v in buckets.items() if newest - N < i <= newest)
            assert (s.value, s.window_end_ms) == (expected, (newest + 1) * BUCKET)
        else:
            value, end = busiest_window_containing(buckets, b, N, newest)
            assert (s.value, s.window_end_ms) == (value, (end + 1) * BUCKET)
        last_seen: dict[str, int] = {}
        for t, _, dv in applied.values():
            last_seen[dv] = max(last_seen.get(dv, 0), t)
        newest_ms = max(last_seen.values())
        assert d.value == sum(1 for t in last_seen.values() if newest_ms - N * BUCKET < t)
        assert f.value == min(t for t, _, _ in applied.values())


class StoreCases:
    @pytest.fixture
    async def store(self, stores: Stores) -> AsyncIterator[EventStore]:
        async with stores.scratch(stores.settings(), CONFIG) as store:
            yield store

    # The same body runs once per backend (a subclass each, hence "differing
    # executors"); it keeps no state on the instance, so the examples of one
    # backend's run cannot leak into the other's.
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(events_strategy, st.randoms(use_true_random=False), st.integers(0, 8))
    def test_aggregates_equal_brute_force_for_any_order_with_duplicates(
        self, stores: Stores, raw: list[tuple[int, int, str]], rnd: object, dups: int
    ) -> None:
        events = [(f"e{i}", T0 + ms, amount, dev) for i, (ms, amount, dev) in enumerate(raw)]
        arrivals = list(events)
        rnd.shuffle(arrivals)  # type: ignore[attr-defined]
        arrivals += [arrivals[i % len(arrivals)] for i in range(dups)]  # redelivered/duplicated

        async def check() -> None:
            async with stores.scratch(stores.settings(), CONFIG) as store:
                await check_against_reference(store, arrivals)

        asyncio.run(check())

    async def test_events_beyond_lateness_are_not_counted(self, store: EventStore) -> None:
        await store.apply([ev("new", T0 + 100 * BUCKET)])
        (late,) = await store.apply([ev("old", T0)])  # 100 buckets back; lateness 60 + window 10
        assert late.values[SUM.agg_id].value is None
        (again,) = await store.apply([ev("new2", T0 + 100 * BUCKET)])
        assert again.values[SUM.agg_id].value == 2

    async def test_events_older_than_the_dedup_horizon_are_too_old(self, store: EventStore) -> None:
        await store.apply([ev("new", T0 + CONFIG.dedup_horizon_ms + BUCKET)])
        (old,) = await store.apply([ev("old", T0)])
        assert old.status is EventStatus.TOO_OLD
        assert old.values[SUM.agg_id].value is None  # beyond the lateness too: not counted

    async def test_incident_claims_new_open_reemit_and_older_bursts(
        self, store: EventStore
    ) -> None:
        t0 = T0
        epoch = incident_epoch(t0 + 600_000)
        (first,) = await store.claim_incidents([claim(t0, t0 + 600_000)])
        assert first.status is IncidentStatus.NEW
        assert first.alert_id == incident_alert_id("b" * 32, epoch, 1)
        assert first.payload == b'{"alert_id":"%s"}' % first.alert_id.encode()
        (second,) = await store.claim_incidents(
            [claim(t0 + 60_000, t0 + 660_000, trigger="e2", pos="orders/0/2")]
        )
        assert (second.status, second.alert_id) == (IncidentStatus.OPEN, first.alert_id)
        assert second.payload is None
        (redo,) = await store.claim_incidents([claim(t0, t0 + 600_000)])
        assert redo.status is IncidentStatus.REEMIT and redo.payload == first.payload
        (dup,) = await store.claim_incidents([claim(t0, t0 + 600_000, pos="orders/3/9")])
        assert dup.status is IncidentStatus.OPEN
        # An older, separate burst arriving late is its own (second) incident.
        older = t0 - 10 * 3_600_000
        (past,) = await store.claim_incidents([claim(older, older + 600_000, trigger="e0")])
        assert past.status is IncidentStatus.NEW
        assert past.alert_id == incident_alert_id("b" * 32, incident_epoch(older + 600_000), 2)
        later = t0 + 660_000 + 3_600_000 + 1
        (fresh,) = await store.claim_incidents([claim(later, later + 600_000, trigger="e9")])
        assert fresh.status is IncidentStatus.NEW and fresh.alert_id not in {
            first.alert_id,
            past.alert_id,
        }

    async def test_incidents_past_their_retention_are_forgotten(self, store: EventStore) -> None:
        """A crossing two days after an incident (retention 24 h) that reaches
        back to it is still a new incident: the old one was let go."""
        (first,) = await store.claim_incidents([claim(T0, T0 + 600_000)])
        day = 86_400_000
        await store.claim_incidents([claim(T0 + 2 * day, T0 + 2 * day + 600_000, trigger="e2")])
        (late,) = await store.claim_incidents([claim(T0, T0 + 600_000, trigger="e3")])
        assert late.status is IncidentStatus.NEW and late.alert_id != first.alert_id

    async def test_a_long_incident_is_not_forgotten_while_it_goes_on(
        self, store: EventStore
    ) -> None:
        """A 7-day window with a 1 h cooldown and a 24 h retention: crossings two
        days apart still belong to the one incident."""
        week = 7 * 86_400_000

        def long_claim(start: int, trigger: str) -> IncidentClaim:
            return dataclasses.replace(
                claim(start, start + week, trigger=trigger), retention_ms=86_400_000
            )

        (first,) = await store.claim_incidents([long_claim(T0, "a")])
        (later,) = await store.claim_incidents([long_claim(T0 + 2 * 86_400_000, "b")])
        (again,) = await store.claim_incidents([long_claim(T0 + 2 * 86_400_000 + 60_000, "c")])
        assert first.status is IncidentStatus.NEW
        assert (later.status, again.status) == (IncidentStatus.OPEN, IncidentStatus.OPEN)
        assert later.alert_id == again.alert_id == first.alert_id

    async def test_first_seen_cannot_be_backdated_beyond_the_lateness(
        self, store: EventStore
    ) -> None:
        (obs,) = await store.apply([ev("now", T0)])
        assert obs.values[FIRST.agg_id].value == T0
        (obs,) = await store.apply([ev("forged", T0 - 10 * 60 * BUCKET)])  # 10 min: > lateness
        assert obs.values[FIRST.agg_id].value == T0
        (obs,) = await store.apply([ev("late", T0 - 30 * BUCKET)])  # 30 s: within lateness
        assert obs.values[FIRST.agg_id].value == T0 - 30 * BUCKET

    async def test_a_reader_sees_the_window_ending_at_its_own_time(self, store: EventStore) -> None:
        """A ratio's denominator is read where the numerator's window ends, not at
        the busiest window around it."""
        await store.apply([ev(f"e{i}", T0 + i * BUCKET) for i in range(30)])
        read = event_requests(
            "probe", T0 + 14 * BUCKET, [AggregateRequest(SUM, ("u",), None)], "EUR"
        )
        (obs,) = await store.apply([read])
        assert obs.values[SUM.agg_id].value == N  # buckets 5..14, one event each
        assert obs.values[SUM.agg_id].window_end_ms == T0 + 15 * BUCKET

    async def test_reads_of_every_kind_change_nothing_and_a_mixed_duplicate_adds_nothing(
        self, store: EventStore
    ) -> None:
        """A read of a distinct or first-seen aggregate only reads; a
        redelivered event that feeds some aggregates and reads others adds to
        none of them."""
        await store.apply([ev("a", T0, amount=5, device="d1"), ev("b", T0 + BUCKET, 7, "d2")])
        ids = ("u",)
        reads = event_requests(
            "probe",
            T0 + 2 * BUCKET,
            [AggregateRequest(s, ids, None) for s in (SUM, DST, FIRST)],
            "EUR",
        )
        for _ in range(2):
            (obs,) = await store.apply([reads])
            assert obs.status is EventStatus.NEW
            assert obs.values[SUM.agg_id].value == 12
            assert obs.values[DST.agg_id].value == 2
            assert obs.values[FIRST.agg_id].value == T0
        feeds = [AggregateRequest(SUM, ids, 4), AggregateRequest(DST, ids, "d3")]
        mixed = event_requests(
            "c", T0 + 2 * BUCKET, [*feeds, AggregateRequest(FIRST, ids, None)], "EUR"
        )
        (first,) = await store.apply([mixed])
        (again,) = await store.apply([mixed])
        assert first.status is EventStatus.NEW and again.status is EventStatus.DUPLICATE
        assert first.values[SUM.agg_id].value == again.values[SUM.agg_id].value == 16
        assert first.values[DST.agg_id].value == again.values[DST.agg_id].value == 3
        (obs,) = await store.apply([reads])
        assert obs.values[SUM.agg_id].value == 16 and obs.values[DST.agg_id].value == 3

    async def test_an_unseen_entity_reads_empty_state(self, store: EventStore) -> None:
        reads = event_requests(
            "probe", T0, [AggregateRequest(s, ("nobody",), None) for s in (SUM, DST, FIRST)], "EUR"
        )
        (obs,) = await store.apply([reads])
        assert [obs.values[s.agg_id].value for s in (SUM, DST, FIRST)] == [0, 0, -1]

    async def test_sums_in_two_currencies_never_meet(self, store: EventStore) -> None:
        """One user, one sum, EUR and JPY amounts interleaved: each currency's
        window holds its own amounts only; counts and distinct values are shared."""
        batch = [
            ev(f"e{i}", T0 + i * 10, 100 if i % 2 else 7, currency="JPY" if i % 2 else "EUR")
            for i in range(6)
        ]
        observed = await store.apply(batch)
        assert [o.values[SUM.agg_id].value for o in observed] == [7, 100, 14, 200, 21, 300]
        (eur,) = await store.apply([ev("probe-eur", T0 + 100, 0, currency="EUR")])
        (jpy,) = await store.apply([ev("probe-jpy", T0 + 100, 0, currency="JPY")])
        assert (eur.values[SUM.agg_id].value, jpy.values[SUM.agg_id].value) == (21, 300)
        assert eur.values[DST.agg_id].value == jpy.values[DST.agg_id].value == 1

    async def test_a_sum_without_a_currency_is_refused(self, store: EventStore) -> None:
        with pytest.raises(ValueError, match="currency"):
            await store.apply([event_requests("x", T0, [AggregateRequest(SUM, ("u",), 1)])])

    async def test_delivered_watermarks_only_rise_per_group_and_partition(
        self, store: EventStore
    ) -> None:
        await check_delivered_watermarks(store)


async def check_delivered_watermarks(store: EventStore) -> None:
    """A late or zombie writer cannot lower a watermark; groups and
    partitions are apart; offsets far above 2^31 come back exact."""
    parts = [("orders", 0), ("orders", 1), ("refunds", 0)]
    assert await store.delivered("g", parts) == {}
    await store.advance_delivered("g", {("orders", 0): 41, ("refunds", 0): 7})
    await store.advance_delivered("g", {("orders", 0): 40, ("refunds", 0): 9})
    await store.advance_delivered("other", {("orders", 1): 5})
    await store.advance_delivered("g", {})
    assert await store.delivered("g", parts) == {("orders", 0): 41, ("refunds", 0): 9}
    assert await store.delivered("other", parts) == {("orders", 1): 5}
    await store.advance_delivered("g", {("orders", 1): 2**52 + 1})
    assert await store.delivered("g", [("orders", 1)]) == {("orders", 1): 2**52 + 1}
    assert await store.delivered("g", []) == {}
