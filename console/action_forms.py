"""The console's action forms → control records, pure: no I/O, time is an
argument. Each form is read field by field into the record the CLI would
build (detectors.control), then checked by the workers' own parser
(`parse_control`), so what a worker would refuse is never published and
the page says why (FormError, a 400).

The record's `control_id` is derived from the form's own token (made when
the page is rendered) and the user: a form sent twice (a double click, a
retry after a timeout) is one record, published twice with the same id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from detectors.control import (
    MAX_ID,
    MAX_REASON,
    ControlRecord,
    ControlRecordError,
    ListEntry,
    Provenance,
    Release,
    Snooze,
)
from detectors.control_parsing import parse_control
from detectors.errors import ConfigError
from detectors.list_names import ListEntityType, ListName
from detectors.release_types import REASON_CODE_PATTERN, ReleaseType
from stream.control_cli import RELEASE_TYPES, encode, parse_until

__all__ = [
    "FormError",
    "checked",
    "control_id_for",
    "form_text",
    "list_entry_record",
    "provenance",
    "reason_of",
    "release_record",
    "snooze_record",
]

# Line breaks a text area sends are spaces in a record (the contract
# refuses control characters in its strings).
_SPACES = str.maketrans({"\r": " ", "\n": " ", "\t": " "})


class FormError(Exception):
    """A form that cannot become a record: the message is for the page."""


def form_text(form: Mapping[str, Any], name: str, limit: int, required: bool = True) -> str:
    """A text field, stripped: missing, not text (a file) or longer than
    `limit` characters is a FormError, never a value cut short."""
    value = form.get(name, "")
    if not isinstance(value, str):
        raise FormError(f"{name}: text expected")
    value = value.strip()
    if len(value) > limit:
        raise FormError(f"{name}: at most {limit} characters")
    if required and not value:
        raise FormError(f"{name}: required")
    return value


def reason_of(form: Mapping[str, Any]) -> str:
    """The required free-text reason, kept in the record and the audit log."""
    raw = form.get("reason", "")
    spaced = raw.translate(_SPACES) if isinstance(raw, str) else raw
    reason = form_text({"reason": spaced}, "reason", MAX_REASON)
    if any(ord(c) < 32 or ord(c) == 0x7F for c in reason):
        raise FormError("reason: control characters are not allowed")
    return reason


def control_id_for(username: str, action: str, token: str) -> str:
    """The record's idempotency key (see the module doc)."""
    key = f"console:{username}:{action}:{token}"
    return "cn_" + hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def provenance(form: Mapping[str, Any], username: str, action: str, now_ms: int) -> Provenance:
    """Who, why and when, with the control id of the form's token."""
    token = form_text(form, "form_token", MAX_ID)
    return Provenance(control_id_for(username, action, token), username, reason_of(form), now_ms)


def checked(record: ControlRecord) -> ControlRecord:
    """The record as the workers will read it, or FormError saying why not."""
    try:
        return parse_control(record.key(), encode(record))
    except ControlRecordError as exc:
        raise FormError(exc.message) from None
    except (OverflowError, ValueError) as exc:  # a time past what RFC 3339 can write
        raise FormError(f"a time out of range ({exc})") from None


def _choice(form: Mapping[str, Any], name: str, allowed: list[str]) -> str:
    value = form.get(name)
    if value not in allowed:
        raise FormError(f"{name}: one of {', '.join(allowed)}")
    return str(value)


def release_record(form: Mapping[str, Any], freeze_id: str, meta: Provenance) -> Release:
    release_type = ReleaseType(_choice(form, "release_type", RELEASE_TYPES))
    code = form_text(form, "reason_code", 64)
    if REASON_CODE_PATTERN.fullmatch(code) is None:
        raise FormError("reason_code: lowercase letters, digits, '_', '.', '-' (e.g. kyc_ok)")
    record = checked(Release(freeze_id, release_type, code, meta))
    assert isinstance(record, Release)
    return record


def _entity(form: Mapping[str, Any]) -> tuple[ListEntityType, str]:
    entity_type = ListEntityType(_choice(form, "entity_type", [t.value for t in ListEntityType]))
    return entity_type, form_text(form, "entity_id", MAX_ID)


def _until(form: Mapping[str, Any], name: str, now_ms: int) -> int | None:
    text = form_text(form, name, 64, required=False)
    if not text:
        return None
    try:
        return parse_until(text, now_ms, name)
    except ConfigError:
        raise FormError(f"{name}: an RFC 3339 time or a duration from now (2h, 7d)") from None


def list_entry_record(form: Mapping[str, Any], meta: Provenance, removed: bool) -> ListEntry:
    """Add (with an optional expiry) or remove (the contract's tombstone)."""
    name = ListName(_choice(form, "list", [n.value for n in ListName]))
    entity_type, entity_id = _entity(form)
    expires = None if removed else _until(form, "expires", meta.issued_at_ms)
    record = checked(ListEntry(name, entity_type, entity_id, expires, removed, meta))
    assert isinstance(record, ListEntry)
    return record


def snooze_record(form: Mapping[str, Any], meta: Provenance, end: bool) -> Snooze:
    """A snooze until a time; or its end: the contract has no tombstone for
    a snooze, so ending one is a snooze of the same key that expires one
    millisecond after it is issued (the workers compare event time)."""
    entity_type, entity_id = _entity(form)
    rule = form_text(form, "rule_id", MAX_ID, required=False) or None
    until = meta.issued_at_ms + 1 if end else _until(form, "until", meta.issued_at_ms)
    if until is None:
        raise FormError("until: required")
    record = checked(Snooze(entity_type, entity_id, rule, until, meta))
    assert isinstance(record, Snooze)
    return record
