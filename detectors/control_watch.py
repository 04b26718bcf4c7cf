"""The watch list's effects on decisions, as pure functions of the control
snapshot and the event, so the live worker and the backtest agree.

An alert is tagged `watch` when any entity of its trigger event that can
be listed (user, device, payment, ip, merchant, campaign) is on the watch
list at the event's time, not only the alert's own entity: a watched
device showing up in an alert about a user is exactly what a watch list is
for. The alert's entity is always one of the event's, so it is covered.
Which entries matched (and who put them there, why) goes into the alert's
evidence under `watched`.

Rules gated on the list (`where: {list: watch}`) get their membership from
`Watch.member`; without any watch entry it answers no without a lookup.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from detectors.control import ListEntityType, ListEntry, ListName
from detectors.control_snapshot import ControlSnapshot
from detectors.decisions import Alert, AlertCandidate, AlertTag
from detectors.events import Event
from detectors.rules_entities import EntityType, entity_value
from detectors.rules_lists import ListMembership, no_lists

__all__ = ["Watch"]


@dataclass(frozen=True, slots=True)
class Watch:
    """The watch list of one snapshot. Build it once per batch (`of`): that
    is when the snapshot is looked at for any watch entry at all."""

    snapshot: ControlSnapshot
    active: bool  # some watch entry is recorded (expired or not)

    @classmethod
    def of(cls, snapshot: ControlSnapshot) -> Watch:
        return cls(snapshot, snapshot.has_list(ListName.WATCH))

    @property
    def membership(self) -> ListMembership:
        """The control lists, as the engine asks for them."""
        return self._member if self.active else no_lists

    def _member(
        self, name: ListName, entity_type: ListEntityType, entity_id: str, at_ms: int
    ) -> bool:
        return self.snapshot.listed(name, entity_type, entity_id, at_ms) is not None

    def entries(self, event: Event) -> list[ListEntry]:
        """The watch entries of the event's entities, active at its time."""
        if not self.active:
            return []
        out = []
        for kind in ListEntityType:
            entity_id = entity_value(event, EntityType(kind.value))
            if not entity_id:
                continue
            entry = self.snapshot.listed(ListName.WATCH, kind, entity_id, event.occurred_at_ms)
            if entry is not None:
                out.append(entry)
        return out

    def tag(self, alert: Alert, event: Event) -> Alert:
        """`alert`, tagged `watch` with the matching entries in its evidence
        when an entity of `event` is watched."""
        entries = self.entries(event)
        if not entries or AlertTag.WATCH in alert.tags:
            return alert
        evidence = {**alert.evidence, "watched": [_describe(e) for e in entries]}
        return dataclasses.replace(alert, tags=(*alert.tags, AlertTag.WATCH), evidence=evidence)

    def tag_candidate(self, candidate: AlertCandidate, event: Event) -> AlertCandidate:
        tagged = self.tag(candidate.alert, event)
        return (
            candidate if tagged is candidate.alert else dataclasses.replace(candidate, alert=tagged)
        )


def _describe(entry: ListEntry) -> dict[str, Any]:
    return {
        "entity_type": entry.entity_type.value,
        "entity_id": entry.entity_id,
        "reason": entry.meta.reason,
        "actor": entry.meta.actor,
        "control_id": entry.meta.control_id,
    }
