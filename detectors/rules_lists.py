"""`where: {list: watch}`: a rule that judges only the entities on a control
list (a lower-threshold twin of a rule, for watched entities).

List membership changes while the system runs (risk ops publish
`list-entry` records), so it is not part of the rule: the caller hands the
engine a `ListMembership` predicate built from the control snapshot it
steers by, and membership is judged at the event's time, so a backtest
under a saved snapshot decides as live did.

A list condition gates the rule's decision only, never what its aggregates
count: every event still counts, so an entity put on the watch list is
judged at once on its full recent history, and taking it off changes no
count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from detectors.events import Event
from detectors.list_names import ListEntityType, ListName
from detectors.rules_entities import EntityType, entity_value

__all__ = [
    "RULE_LISTS",
    "ListCondition",
    "ListMembership",
    "listable",
    "no_lists",
]

# The lists a rule may be gated on. Allow-listed entities never alert and
# block-listed ones alert on every event already, so only `watch` is useful.
RULE_LISTS = frozenset({ListName.WATCH})


class ListMembership(Protocol):
    def __call__(
        self, name: ListName, entity_type: ListEntityType, entity_id: str, at_ms: int
    ) -> bool:
        """Whether the entity's entry in list `name` is active at `at_ms`."""
        ...


def no_lists(name: ListName, entity_type: ListEntityType, entity_id: str, at_ms: int) -> bool:
    """Membership when no control snapshot is given: every list is empty."""
    return False


_LISTABLE = {t.value: t for t in ListEntityType}


def listable(entity_type: EntityType) -> ListEntityType | None:
    """The list entity type of a rule entity (None: it cannot be on a list)."""
    return _LISTABLE.get(entity_type.value)


@dataclass(frozen=True, slots=True)
class ListCondition:
    """Holds when an entity of the rule's key (any one of a compound key) is
    on `list` at the event's time."""

    list: ListName

    def holds(
        self, entity: tuple[EntityType, ...], event: Event, membership: ListMembership
    ) -> bool:
        at_ms = event.occurred_at_ms
        for entity_type in entity:
            kind = listable(entity_type)
            entity_id = entity_value(event, entity_type) if kind is not None else None
            if kind is not None and entity_id and membership(self.list, kind, entity_id, at_ms):
                return True
        return False

    def describe(self) -> str:
        return f"on the {self.list.value} list"
