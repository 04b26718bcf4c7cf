"""The state a worker steers by: `risk-control`'s records folded, in topic
order, into one immutable snapshot.

The last record of a key wins (exactly what compaction keeps), a tombstone
(a null value, or a list entry marked `removed`) removes the key's state.
Expiry is not applied by the fold but by the lookups, against a time the
caller gives (event time in decisions), so one snapshot answers the same
for a backtest of last month as it did live then.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from detectors.control import (
    Breaker,
    BreakerState,
    ControlKind,
    ControlRecord,
    KillSwitch,
    ListEntityType,
    ListEntry,
    ListName,
    RuleMode,
    RuleModeSetting,
    Ruleset,
    Snooze,
    Switch,
    control_key,
    snooze_key,
)
from detectors.control_parsing import parse_control

__all__ = ["EMPTY", "ControlSnapshot", "fold"]


@dataclass(frozen=True, slots=True)
class ControlSnapshot:
    """`records`: the live record of each key. `applied`: how many records
    were folded in (a cheap version number to log and show)."""

    records: Mapping[str, ControlRecord] = field(default_factory=dict)
    applied: int = 0

    @property
    def kill_switch(self) -> bool:
        record = self.records.get(ControlKind.KILL_SWITCH.value)
        return isinstance(record, KillSwitch) and record.state is Switch.ON

    @property
    def breaker(self) -> Breaker | None:
        record = self.records.get(ControlKind.BREAKER.value)
        return record if isinstance(record, Breaker) else None

    @property
    def breaker_tripped(self) -> bool:
        record = self.breaker
        return record is not None and record.state is BreakerState.TRIPPED

    def rule_mode(self, rule_id: str) -> RuleModeSetting | None:
        record = self.records.get(control_key(ControlKind.RULE_MODE.value, rule_id))
        return record.mode if isinstance(record, RuleMode) else None

    def listed(
        self, name: ListName, entity_type: ListEntityType, entity_id: str, at_ms: int
    ) -> ListEntry | None:
        key = control_key("list", name.value, entity_type.value, entity_id)
        record = self.records.get(key)
        return record if isinstance(record, ListEntry) and record.active(at_ms) else None

    def snoozed(
        self, entity_type: ListEntityType, entity_id: str, rule_id: str, at_ms: int
    ) -> Snooze | None:
        """The snooze covering the entity for every rule or for `rule_id`."""
        for rule in (None, rule_id):
            record = self.records.get(snooze_key(entity_type, entity_id, rule))
            if isinstance(record, Snooze) and record.active(at_ms):
                return record
        return None

    def has_list(self, name: ListName) -> bool:
        """Whether any entry of list `name` is recorded (expired or not): lets
        a caller skip per-event lookups when nobody is on the list."""
        return any(isinstance(r, ListEntry) and r.list is name for r in self.records.values())

    def of_kind(self, kind: ControlKind) -> list[ControlRecord]:
        return [r for _, r in sorted(self.records.items()) if r.kind is kind]

    def to_wire(self) -> dict[str, Any]:
        """Saved by `control show --json`, read by `backtest --control`."""
        return {
            "applied": self.applied,
            "records": {key: r.to_wire() for key, r in sorted(self.records.items())},
        }

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> ControlSnapshot:
        """A saved snapshot, every record checked as strictly as on the topic
        (ControlRecordError on the first bad one)."""
        records = wire.get("records")
        if not isinstance(records, Mapping):
            raise ValueError("a saved control snapshot has a 'records' object")
        applied = wire.get("applied", 0)
        return cls(
            {key: parse_control(key, value) for key, value in records.items()},
            applied if isinstance(applied, int) else 0,
        )

    @property
    def ruleset(self) -> Ruleset | None:
        """The published rule set, if any (else workers run their rules file).
        Only a valid one is ever folded: the parser refuses the others."""
        record = self.records.get(ControlKind.RULESET.value)
        return record if isinstance(record, Ruleset) else None


EMPTY = ControlSnapshot()


def fold(
    entries: Iterable[tuple[str, ControlRecord | None]], base: ControlSnapshot = EMPTY
) -> ControlSnapshot:
    """`base` with `entries` (key, record or None for a Kafka tombstone) applied in order."""
    records = dict(base.records)
    applied = base.applied
    for key, record in entries:
        applied += 1
        if record is None or (isinstance(record, ListEntry) and record.removed):
            records.pop(key, None)
        else:
            records[key] = record
    return ControlSnapshot(records, applied)
