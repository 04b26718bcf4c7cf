"""The entity page's counters and health, read through the store's
read-only view: rows named for people, money per currency, a store that
does not answer turned into a message, never an error page."""

from __future__ import annotations

import orjson

from console.entity_state import EntityStateReader, describe, rule_currencies
from detectors.errors import StoreUnavailable
from detectors.events import Topic
from detectors.rules_entities import EntityType
from stream.codec import SourceRecord
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store.counters import CounterQuery, CounterReading
from stream.store.memory_store import MemoryStore
from tests.integration.services import TEST_KEY_HASH_SECRET
from tests.store_cases.requests import process

T0 = 1_800_000_000_000
SETTINGS = Settings(key_hash_secret=TEST_KEY_HASH_SECRET)


def order(i: int, amount: int, currency: str) -> SourceRecord:
    value = {
        "event_id": f"e{i}",
        "occurred_at": f"2027-01-15T08:0{i}:00Z",
        "order_id": f"o{i}",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount_minor": amount,
        "currency": currency,
    }
    return SourceRecord("orders", 0, i, b"u1", orjson.dumps(value), 0)


async def test_rows_name_each_counter_its_value_and_the_rules_reading_it() -> None:
    book = load_rulebook(SETTINGS)
    store = MemoryStore()
    pipeline = Pipeline(SETTINGS, store, book)
    await process(pipeline, Topic.ORDERS, [order(1, 1200, "EUR"), order(2, 800, "EUR")], T0)
    state = await EntityStateReader(store, book).read(EntityType.USER, "u1")
    assert state.error is None and state.health is None  # a user has no health
    by_rule = {rule: c for c in state.counters for rule in c.rules}
    velocity = by_rule["user_order_velocity_10m"]
    assert (velocity.what, velocity.value) == ("count of events in orders over 10m", "2")
    assert velocity.as_of is not None and velocity.as_of.startswith("2027-01-15T08:")
    merchant = await EntityStateReader(store, book).read(EntityType.MERCHANT, "m1")
    sales = {c.what: c.value for c in merchant.counters}
    assert sales["sum of amount_minor in orders over 1d"] == "EUR 20.00"
    refunds = (
        "sum of amount_minor in refunds where paid_out_at_ms exists and order_age_ms>=172800000"
    )
    assert sales[refunds + " over 1w"] == "—"
    assert merchant.health is not None and merchant.health["merchant_id"] == "m1"


async def test_an_entity_never_seen_shows_dashes() -> None:
    book = load_rulebook(SETTINGS)
    state = await EntityStateReader(MemoryStore(), book).read(EntityType.DEVICE, "d-x")
    assert state.counters and {c.value for c in state.counters} == {"—"}


class Unreachable(MemoryStore):
    def counters(self) -> Unreachable:
        return self

    async def read(self, query: CounterQuery) -> list[CounterReading]:
        raise StoreUnavailable("counters_read", ConnectionError("refused"))


async def test_a_store_that_does_not_answer_is_a_message() -> None:
    state = await EntityStateReader(Unreachable(), load_rulebook(SETTINGS)).read(
        EntityType.USER, "u1"
    )
    assert (state.counters, state.error) == (
        [],
        "the workers' store did not answer (counters_read)",
    )


def test_names_and_currencies() -> None:
    book = load_rulebook(SETTINGS)
    assert "EUR" in rule_currencies(book)
    first = [s for s in book.aggregates() if s.kind.value == "first_seen"]
    assert first and describe(first[0]).startswith("first seen (in ")
