"""The alert queue's filters and page position, from a page's GET
parameters (pure: no I/O). A value that is not one of its field's
choices is refused with a message naming the field, never echoing the
value back unescaped (the template escapes the message like any text).

Paging is by keyset: a page after another starts below the last alert
shown, (event time, alert id) in descending order, so every page reads
an index from a position instead of skipping rows (no OFFSET)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TypeVar
from urllib.parse import urlencode

from detectors.rules import Mode, Severity
from detectors.rules_entities import EntityType

__all__ = [
    "AlertStatus",
    "Assigned",
    "Cursor",
    "FilterError",
    "QueueFilter",
    "epoch_ms",
    "parse_filter",
]

MAX_TEXT = 200
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
E = TypeVar("E", bound=StrEnum)


def epoch_ms(value: datetime) -> int:
    """Exact, in integers (no float on the way): a page position one
    millisecond off would skip or repeat alerts."""
    return (value - EPOCH) // MS


class AlertStatus(StrEnum):
    """The console's own case state of an alert (the `status` column)."""

    NEW = "new"
    ASSIGNED = "assigned"
    CLOSED = "closed"


class Assigned(StrEnum):
    """The queue's assignment filter: the viewer's own cases, or nobody's."""

    ME = "me"
    NOBODY = "none"


class FilterError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cursor:
    """An alert's place in the queue: (event time, alert id)."""

    occurred_at_ms: int
    alert_id: str

    def encode(self) -> str:
        return f"{self.occurred_at_ms}~{self.alert_id}"

    @classmethod
    def decode(cls, raw: str) -> Cursor:
        ms, sep, alert_id = raw.partition("~")
        if not sep or not ms.isdigit() or not alert_id or len(alert_id) > MAX_TEXT:
            raise FilterError("the page position is not one this console made")
        return cls(int(ms), alert_id)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    rule: str | None = None
    severity: Severity | None = None
    entity_type: EntityType | None = None
    mode: Mode | None = None
    status: AlertStatus | None = None
    since_ms: int | None = None  # event time, inclusive
    until_ms: int | None = None  # event time, exclusive
    before: Cursor | None = None  # the page starts below this alert
    assigned: Assigned | None = None

    def params(self, before: Cursor | None = None) -> dict[str, str]:
        """The GET parameters of this filter (the page position replaced)."""
        out: dict[str, str] = {}
        for name in ("rule", "severity", "entity_type", "mode", "status", "assigned"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        if self.since_ms is not None:
            out["since"] = _format_time(self.since_ms)
        if self.until_ms is not None:
            out["until"] = _format_time(self.until_ms)
        if before is not None:
            out["before"] = before.encode()
        return out

    def query(self, before: Cursor | None = None) -> str:
        return urlencode(self.params(before))

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


def _member(enum: type[E], name: str, raw: str | None) -> E | None:
    if not raw:
        return None
    try:
        return enum(raw)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise FilterError(f"{name} must be one of: {choices}") from None


def _time(name: str, raw: str | None) -> int | None:
    """`YYYY-MM-DDTHH:MM[:SS]` (a datetime-local field, read as UTC) or RFC 3339."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{name} must be a time like 2026-11-28T10:15 (UTC)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return epoch_ms(value)


def _format_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_filter(query: Mapping[str, str]) -> QueueFilter:
    rule = (query.get("rule") or "").strip()
    if len(rule) > MAX_TEXT:
        raise FilterError(f"rule is longer than {MAX_TEXT} characters")
    before = query.get("before")
    return QueueFilter(
        rule=rule or None,
        severity=_member(Severity, "severity", query.get("severity")),
        entity_type=_member(EntityType, "entity type", query.get("entity_type")),
        mode=_member(Mode, "mode", query.get("mode")),
        status=_member(AlertStatus, "status", query.get("status")),
        since_ms=_time("since", query.get("since")),
        until_ms=_time("until", query.get("until")),
        before=Cursor.decode(before) if before else None,
        assigned=_member(Assigned, "assigned", query.get("assigned")),
    )
