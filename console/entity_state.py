"""What the workers hold on an entity, for its page: the counters its
rules read (through the store's read-only view, stream.store.counters, never
raw keys) and, for a merchant, its health snapshot (the ledger's last one).

Redis is the workers' store: the console only reads it, and an entity page
still renders when Redis does not answer (it says so instead of counters).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.durations import format_duration_ms
from detectors.errors import StoreUnavailable
from detectors.money import format_minor
from detectors.rulebook import Rulebook
from detectors.rules_entities import EntityType
from detectors.timestamps import format_rfc3339_ms
from stream.health_records import stored_snapshot
from stream.store.base import EventStore
from stream.store.counters import CounterQuery, CounterReading

__all__ = [
    "ENTITY_STATE",
    "CounterRow",
    "EntityState",
    "EntityStateReader",
    "counter_rows",
    "describe",
    "rule_currencies",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CounterRow:
    what: str  # e.g. "count of orders over 1h"
    rules: tuple[str, ...]  # the rules that read it
    value: str  # formatted; "—" when the store holds nothing
    as_of: str | None  # the end of the window the value covers (event time)


@dataclass(frozen=True, slots=True)
class EntityState:
    counters: list[CounterRow]
    health: dict[str, Any] | None  # a merchant's last published health snapshot
    error: str | None = None  # why the store could not be read


def describe(spec: AggregateSpec) -> str:
    """A person's name for an aggregate: kind, what of which events, window."""
    topics = ", ".join(sorted(t.value for t in spec.topics))
    if spec.kind is AggregateKind.FIRST_SEEN:
        return f"first seen (in {topics})"
    what = f"{spec.kind.value} of {spec.field or 'events'} in {topics}"
    if spec.where:
        what += " where " + " and ".join(c.describe() for c in spec.where)
    return f"{what} over {format_duration_ms(spec.window_ms or 0)}"


def _value(r: CounterReading) -> tuple[str, str | None]:
    if r.value is None:
        return "—", None
    if r.spec.kind is AggregateKind.FIRST_SEEN:
        return format_rfc3339_ms(r.value), None
    as_of = format_rfc3339_ms(r.end_ms) if r.end_ms is not None else None
    if r.currency is not None:
        return format_minor(r.value, r.currency), as_of
    return str(r.value), as_of


def counter_rows(book: Rulebook, readings: list[CounterReading]) -> list[CounterRow]:
    rows = []
    for r in readings:
        value, as_of = _value(r)
        users = tuple(rule.rule_id for rule in book.rules if r.spec in rule.aggregates())
        rows.append(CounterRow(describe(r.spec), users, value, as_of))
    return rows


def rule_currencies(book: Rulebook) -> list[str]:
    """The currencies the money rules judge (their thresholds and volumes
    name them): a money sum is kept per currency, and these are the ones a
    rule can read."""
    return sorted({c for rule in book.rules for c in rule.currencies or ()})


class EntityStateReader:
    def __init__(self, store: EventStore, book: Rulebook) -> None:
        self._store, self._book = store, book
        self._currencies = rule_currencies(book)

    def specs_of(self, entity: EntityType) -> list[AggregateSpec]:
        return [s for s in self._book.aggregates() if s.entity == (entity,)]

    async def read(self, entity: EntityType, entity_id: str) -> EntityState:
        try:
            query = CounterQuery((entity,), (entity_id,), self.specs_of(entity), self._currencies)
            readings = await self._store.counters().read(query)
            health = None
            if entity is EntityType.MERCHANT:
                states = await self._store.health_ledger().read([entity_id], records=True)
                health = stored_snapshot(states[entity_id])
        except StoreUnavailable as exc:
            log.warning("console: entity state unavailable (%s)", exc)
            return EntityState([], None, f"the workers' store did not answer ({exc.operation})")
        return EntityState(counter_rows(self._book, readings), health)

    async def close(self) -> None:
        await self._store.close()


ENTITY_STATE = web.AppKey("entity_state", EntityStateReader)
