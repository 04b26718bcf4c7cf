"""What one scenario instance leaves behind for its label: the entities it
consists of, where the expected action must land, and the time span of its
telling events.

Scenarios add entities one by one as they create them, so a label can only
name what the scenario itself controls: the normal merchants a device farm
redeems at, or the innocent customers a merchant refunds, never get in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from detectors.events import Event
from detectors.rules_entities import EntityType
from stream.simulation.labels import EntityRef
from stream.simulation.model import Merchant, User

__all__ = ["Footprint", "Trace"]


@dataclass(frozen=True, slots=True)
class Footprint:
    entities: tuple[EntityRef, ...]
    expect_on: tuple[EntityRef, ...]
    start_ms: int
    end_ms: int
    description: str


class Trace:
    def __init__(self) -> None:
        self._entities: dict[EntityRef, None] = {}
        self._first: int | None = None
        self._last: int | None = None

    def add(self, kind: EntityType, *ids: str) -> list[EntityRef]:
        refs = [EntityRef(kind, i) for i in ids]
        self._entities.update(dict.fromkeys(refs))
        return refs

    def account(self, user: User, *, ip: bool = False, payment: bool = False) -> EntityRef:
        """A user the scenario controls, with its devices (and IP, payment if asked)."""
        ref = self.add(EntityType.USER, user.user_id)[0]
        self.add(EntityType.DEVICE, *user.devices)
        if ip:
            self.add(EntityType.IP, user.home_ip)
        if payment:
            self.add(EntityType.PAYMENT, user.payment)
        return ref

    def merchant(self, merchant: Merchant) -> EntityRef:
        return self.add(EntityType.MERCHANT, merchant.merchant_id)[0]

    def cover(self, events: Iterable[Event]) -> None:
        """Stretch the scenario's span over these events."""
        for event in events:
            at = event.occurred_at_ms
            self._first = at if self._first is None else min(self._first, at)
            self._last = at if self._last is None else max(self._last, at)

    def footprint(self, expect_on: Sequence[EntityRef], description: str) -> Footprint:
        if self._first is None or self._last is None:
            raise ValueError("a scenario must cover at least one event")
        missing = [e for e in expect_on if e not in self._entities]
        if missing:
            raise ValueError(f"expect_on entities missing from entities: {missing}")
        return Footprint(
            tuple(self._entities), tuple(expect_on), self._first, self._last, description
        )
