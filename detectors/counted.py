"""The events an alert counted: up to a configured number of event ids of
the events its main aggregate counted in the alert's window, for the
analyst who asks "which orders?".

The store keeps, with each count and sum some rule can list (its main
aggregate, in a rule that fires on a rise), the ids of the last events it
counted (a ring), and hands them back with an observation only when the
value reaches a floor below which no rule reading that aggregate as its
main one can fire: reading them for every event would cost every event,
while an alert needs them only near a crossing. A rule's floor comes from
its metric kind (`Evaluator.report_floor`); an aggregate's is the lowest of
its rules'. The ring is read in the same atomic step as the count, so what
an alert lists depends only on the order its entity's events were applied
in, never on how they were batched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from detectors.money import PerCurrency

__all__ = ["Counted", "ReportFloor", "counted_ids", "floor_of", "higher"]

# One counted event: (its event time ms, its event id), oldest first.
Counted = tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class ReportFloor:
    """The value from which an aggregate's counted events are reported:
    `every` for counts and for sums in any currency, `by_currency` for a
    sum's currencies (money thresholds are per currency). 0: never."""

    every: int = 0
    by_currency: tuple[tuple[str, int], ...] = ()

    def at(self, currency: str | None) -> int:
        found = [self.every] if self.every else []
        found += [v for c, v in self.by_currency if c == currency]
        return min(found) if found else 0

    def lower(self, other: ReportFloor) -> ReportFloor:
        """The floor that reports whenever either would."""
        every = min(x for x in (self.every, other.every) if x) if self.every or other.every else 0
        merged: dict[str, int] = {}
        for c, v in (*self.by_currency, *other.by_currency):
            merged[c] = min(merged.get(c, v), v)
        return ReportFloor(every, tuple(sorted(merged.items())))

    def signature(self) -> str:
        return f"{self.every}:" + ",".join(f"{c}={v}" for c, v in self.by_currency)


def higher(a: ReportFloor, b: ReportFloor) -> ReportFloor:
    """The floor of a value that must reach both (a threshold and a
    minimum volume, which name the same currencies)."""
    every = max(a.every, b.every) if a.every and b.every else 0
    by_currency = tuple((c, max(v, b.at(c))) for c, v in a.by_currency)
    return ReportFloor(every, by_currency)


def floor_of(limit: float | PerCurrency) -> ReportFloor:
    """A floor from a limit the value must reach (rounded down, and at
    least 1: a count or sum of nothing names no events)."""
    if isinstance(limit, PerCurrency):
        return ReportFloor(0, tuple((c, max(1, math.floor(v))) for c, v in limit.values))
    return ReportFloor(max(1, math.floor(limit)))


def counted_ids(
    entries: Counted, trigger_id: str, trigger_ms: int, start_ms: int, end_ms: int
) -> tuple[str, ...]:
    """What an alert lists: the ring's entries up to its trigger (a
    redelivered trigger may find later events after it), within its window
    [start_ms, end_ms), oldest first. The ring's size bounds how many."""
    upto: Sequence[tuple[int, str]] = entries
    for i in range(len(entries) - 1, -1, -1):
        if entries[i][1] == trigger_id:
            upto = entries[: i + 1]
            break
    else:
        upto = [e for e in entries if e[0] <= trigger_ms]
    return tuple(event_id for ms, event_id in upto if start_ms <= ms < end_ms)
