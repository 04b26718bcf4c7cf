"""Kafka records → console rows (console.mapping): what each record gives,
and what a record that cannot be used gives instead."""

from __future__ import annotations

import hashlib
import json

import pytest

from console.mapping import VALUE_KEPT_BYTES, index_record
from console.rows import (
    AlertRow,
    AuditRow,
    ControlRow,
    FreezeKind,
    FreezeRow,
    Position,
    RejectedRow,
    RejectReason,
    ReleaseRow,
    Source,
    VerdictRow,
)
from detectors.rules import ActionKind
from detectors.verdicts import VerdictKind
from tests.console_records import T0, alert, dumps, freeze, list_entry, release, rule_mode
from tests.unit.test_verdicts import verdict

AT = Position("risk-alerts", 2, 41)


def test_an_alert_gives_its_row_with_the_body_kept_whole() -> None:
    value = dumps(alert(3).to_wire())
    (row,) = index_record(Source.ALERTS, AT, b"u-3", value)
    assert row == AlertRow(
        alert_id=f"al_{3:032x}",
        rule_id="user_order_velocity",
        rule_version=1,
        severity="high",
        entity_type="user",
        entity_id="u-3",
        mode="shadow",
        ruleset_version="a" * 64,
        occurred_at_ms=T0,
        detected_at_ms=T0 + 50,
        body=value.decode(),
    )


def test_a_fund_freeze_holds_its_payout_value_and_a_benefit_freeze_none() -> None:
    fund = freeze(1, ActionKind.FUND_FREEZE, amount=125_000)
    (row,) = index_record(Source.FUND_FREEZES, AT, b"m-1", dumps(fund.to_wire()))
    assert isinstance(row, FreezeRow)
    assert (row.kind, row.subject_type, row.subject_id) == (FreezeKind.FUND, "merchant", "m-1")
    assert (row.amount_minor, row.currency, row.scope) == (125_000, "EUR", "payout:p-1")
    assert (row.issued_at_ms, row.expires_at_ms) == (T0, T0 + 7 * 86_400_000)
    benefit = freeze(2, ActionKind.BENEFIT_FREEZE)
    (row,) = index_record(Source.BENEFIT_FREEZES, AT, b"d-2", dumps(benefit.to_wire()))
    assert isinstance(row, FreezeRow)
    assert (row.kind, row.subject_type, row.subject_id) == (FreezeKind.BENEFIT, "device", "d-2")
    assert (row.amount_minor, row.currency) == (None, None)


def test_a_release_on_a_freeze_topic_names_its_freeze() -> None:
    f = freeze(4, ActionKind.FUND_FREEZE)
    (row,) = index_record(Source.FUND_FREEZES, AT, b"m-4", release(f, T0 + 5))
    assert isinstance(row, ReleaseRow)
    assert (row.freeze_id, row.kind, row.release_type) == (f.freeze_id, FreezeKind.FUND, "manual")
    assert (row.actor, row.reason_code, row.control_id, row.issued_at_ms) == (
        "ana",
        "appeal",
        "c-rel",
        T0 + 5,
    )
    assert row.release_id.startswith("rl_")


def test_a_control_record_gives_its_row_and_an_audit_entry() -> None:
    key, value = list_entry("c-9", "m-7")
    control, audit = index_record(Source.CONTROL, Position("risk-control", 0, 8), key, value)
    assert control == ControlRow(
        control_id="c-9",
        kind="list-entry",
        record_key=key.decode(),
        actor="ana",
        reason="ticket 42",
        issued_at_ms=T0,
        partition=0,
        offset=8,
        body=value.decode(),
    )
    assert audit == AuditRow(
        idempotency_key="control:c-9",
        at_ms=T0,
        actor="ana",
        action="control.list-entry",
        reason="ticket 42",
        target_type="list-entry",
        target_id=key.decode(),
        payload=value.decode(),
    )


def test_a_verdict_gives_its_row_and_an_audit_entry_and_a_bad_one_is_rejected() -> None:
    v = verdict(VerdictKind.FALSE_POSITIVE)
    at = Position("risk-verdicts", 0, 3)
    row, audit = index_record(Source.VERDICTS, at, b"al", v.to_bytes())
    body = v.to_bytes().decode()
    assert row == VerdictRow(
        v.verdict_id,
        v.alert_id,
        "false_positive",
        v.rule_id,
        v.note,
        "alice",
        v.decided_at_ms,
        body,
    )
    assert audit == AuditRow(
        idempotency_key=f"verdict:{v.verdict_id}",
        at_ms=v.decided_at_ms,
        actor="alice",
        action="verdict.false_positive",
        reason=v.note,
        target_type="alert",
        target_id=v.alert_id,
        payload=body,
    )
    (bad,) = index_record(Source.VERDICTS, at, b"al", b'{"schema_version": 1, "x": 1}')
    assert isinstance(bad, RejectedRow) and bad.reason is RejectReason.BAD_VERDICT
    assert "missing_field" in bad.message


def test_a_control_tombstone_gives_nothing() -> None:
    assert index_record(Source.CONTROL, AT, b"rule-mode:x", None) == ()


def _rejection(source: Source, value: bytes | None, key: bytes | None = b"k") -> RejectedRow:
    (row,) = index_record(source, AT, key, value)
    assert isinstance(row, RejectedRow)
    return row


def _alert_with_raw(member: bytes) -> bytes:
    return dumps(alert(1).to_wire())[:-1] + b"," + member + b"}"


def _alert_with(**changes: object) -> bytes:
    return dumps({**alert(1).to_wire(), **changes})


@pytest.mark.parametrize(
    ("source", "value", "reason", "says"),
    [
        (Source.ALERTS, None, RejectReason.EMPTY_VALUE, "no value"),
        (Source.ALERTS, b"", RejectReason.EMPTY_VALUE, "empty"),
        (Source.ALERTS, b"\xff{}", RejectReason.INVALID_UTF8, "UTF-8"),
        (Source.ALERTS, b"{not json", RejectReason.INVALID_JSON, "JSON"),
        (Source.ALERTS, b"[1, 2]", RejectReason.NOT_AN_OBJECT, "object"),
        (Source.ALERTS, _alert_with_raw(b'"observed":NaN'), RejectReason.INVALID_JSON, "NaN"),
        (Source.ALERTS, _alert_with(alert_id=None), RejectReason.MISSING_FIELD, "alert_id"),
        (Source.ALERTS, _alert_with(rule_version="1"), RejectReason.WRONG_TYPE, "rule_version"),
        (Source.ALERTS, _alert_with(rule_version=True), RejectReason.WRONG_TYPE, "rule_version"),
        (Source.ALERTS, _alert_with(severity="dire"), RejectReason.BAD_ENUM, "severity"),
        (Source.ALERTS, _alert_with(occurred_at="yesterday"), RejectReason.BAD_FORMAT, "occurred"),
        (Source.ALERTS, _alert_with(entity_id="u\x00"), RejectReason.NUL_CHARACTER, "U+0000"),
        (Source.ALERTS, _alert_with(evidence={"k\x00": 1}), RejectReason.NUL_CHARACTER, "U+0000"),
        (Source.FUND_FREEZES, dumps({"action": "thaw"}), RejectReason.BAD_ENUM, "action"),
        (Source.CONTROL, dumps({"kind": "mystery"}), RejectReason.BAD_CONTROL, "kind"),
    ],
)
def test_a_record_that_cannot_be_used_is_rejected_with_its_reason(
    source: Source, value: bytes | None, reason: RejectReason, says: str
) -> None:
    row = _rejection(source, value)
    assert row.reason is reason and says in row.message
    assert row.position == AT and row.key == b"k" and row.value == value


def test_a_fund_freeze_with_an_amount_but_no_currency_is_rejected() -> None:
    wire = freeze(1, ActionKind.FUND_FREEZE, amount=10).to_wire()
    del wire["currency"]
    row = _rejection(Source.FUND_FREEZES, dumps(wire))
    assert row.reason is RejectReason.MISSING_FIELD and "currency" in row.message


def test_a_control_record_needs_its_key_and_the_right_one() -> None:
    key, value = rule_mode("c-1")
    assert isinstance(index_record(Source.CONTROL, AT, key, value)[0], ControlRow)
    assert "needs a key" in _rejection(Source.CONTROL, value, key=None).message
    wrong = _rejection(Source.CONTROL, value, key=b"rule-mode:other")
    assert wrong.reason is RejectReason.BAD_CONTROL and "does not match" in wrong.message


def test_a_rejected_value_is_kept_up_to_64_kib_with_its_size_and_hash() -> None:
    value = b'{"x": "' + b"y" * (2 * VALUE_KEPT_BYTES) + b'"'  # not JSON: no closing brace
    row = _rejection(Source.ALERTS, value)
    assert row.value == value[:VALUE_KEPT_BYTES] and row.value_truncated
    assert row.value_size == len(value)
    assert row.value_sha256 == hashlib.sha256(value).hexdigest()
    small = _rejection(Source.ALERTS, b"nope")
    assert small.value == b"nope" and not small.value_truncated


def test_the_mapping_is_deterministic() -> None:
    """A replayed record gives equal rows: the store's keyed inserts then
    change nothing."""
    value = dumps(alert(5).to_wire())
    assert index_record(Source.ALERTS, AT, None, value) == index_record(
        Source.ALERTS, AT, None, value
    )
    assert json.loads(value)["alert_id"] == f"al_{5:032x}"
