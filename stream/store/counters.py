"""A read-only view of an entity's counters, for people: the console's
entity page and `fraudstream counters` show what the rules see of one
user, device or merchant without anyone reading raw keys.

A reading is the value the store holds, as of the entity's own newest
event for that aggregate (the window ending there), never "as of now": the
store keeps event time, and sliding a window forward to the wall clock
would be a write (one that makes later, still acceptable, late events look
too late). So a read changes nothing, on either backend, and can be made
against a replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from detectors.aggregates import AggregateSpec
from detectors.rules_entities import EntityType

__all__ = ["CounterQuery", "CounterReader", "CounterReading", "Entity"]

Entity = tuple[tuple[EntityType, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class CounterReading:
    """One aggregate of one entity (of one currency, for money sums).
    `value` None: the store holds nothing for it (never fed, or expired).
    `end_ms`: the window the value covers ends there (exclusive); for a
    first sighting, the value is the sighting's time and `end_ms` None."""

    spec: AggregateSpec
    currency: str | None
    value: int | None
    end_ms: int | None


@dataclass(frozen=True, slots=True)
class CounterQuery:
    """Which counters of which entity: the aggregates the rules keep on it
    and, for money sums, the currencies to read them in."""

    entity: tuple[EntityType, ...]
    entity_ids: tuple[str, ...]
    specs: Sequence[AggregateSpec]
    currencies: Sequence[str] = ()

    def wanted(self) -> list[tuple[AggregateSpec, str | None]]:
        """The (spec, currency) pairs a read answers, in its order: money
        sums are kept per currency and never added across them."""
        out: list[tuple[AggregateSpec, str | None]] = []
        for spec in self.specs:
            if spec.per_currency:
                out += [(spec, c) for c in self.currencies]
            else:
                out.append((spec, None))
        return out


class CounterReader(Protocol):
    async def read(self, query: CounterQuery) -> list[CounterReading]:
        """One reading per (spec, currency) of `query.wanted()`, in order."""
        ...
