"""Records of the topics the console indexes, built with the workers' own
types (`detectors`), so the tests index what the workers publish."""

from __future__ import annotations

import json

from detectors.control import (
    ListEntityType,
    ListEntry,
    ListName,
    Provenance,
    RuleMode,
    RuleModeSetting,
)
from detectors.decisions import Alert, Freeze
from detectors.release_types import ReleaseType
from detectors.releases import ActiveFreeze, ReleaseSpec, release_for
from detectors.rules import ActionKind, Mode, Severity
from detectors.rules_entities import EntityType

T0 = 1_796_000_000_000  # 2026-11-28, epoch ms
MINUTE = 60_000


def dumps(wire: object) -> bytes:
    return json.dumps(wire, separators=(",", ":")).encode()


def alert(n: int, at_ms: int = T0, rule: str = "user_order_velocity", user: str = "") -> Alert:
    return Alert(
        alert_id=f"al_{n:032x}",
        rule_id=rule,
        rule_version=1,
        severity=Severity.HIGH if n % 2 else Severity.CRITICAL,
        entity_type=EntityType.USER,
        entity_id=user or f"u-{n % 7}",
        window_ms=10 * MINUTE,
        window_start_ms=at_ms - 10 * MINUTE,
        observed=8,
        threshold=8,
        trigger_event_id=f"ev-{n}",
        trigger_topic="orders",
        occurred_at_ms=at_ms,
        detected_at_ms=at_ms + 50,
        mode=Mode.ENFORCE if n % 3 else Mode.SHADOW,
        evidence={"aggregate": "count", "value": 8},
        ruleset_version="a" * 64,
    )


def freeze(n: int, kind: ActionKind, at_ms: int = T0, amount: int | None = None) -> Freeze:
    fund = kind is ActionKind.FUND_FREEZE
    return Freeze(
        freeze_id=f"fz_{n:032x}",
        kind=kind,
        subject_type=EntityType.MERCHANT if fund else EntityType.DEVICE,
        subject_id=f"m-{n}" if fund else f"d-{n}",
        scope=(f"payout:p-{n}" if amount is not None else "payouts") if fund else "vouchers",
        rule_id="merchant_payout_spike" if fund else "device_voucher_accounts",
        severity=Severity.HIGH,
        reason_alert_id=f"al_{n:032x}",
        expires_at_ms=at_ms + 7 * 86_400_000,
        issued_at_ms=at_ms,
        amount_minor=amount,
        currency=None if amount is None else "EUR",
        ruleset_version="a" * 64,
    )


def release(f: Freeze, at_ms: int, control_id: str = "c-rel") -> bytes:
    spec = ReleaseSpec(ReleaseType.MANUAL, "appeal", "ana", "customer called", control_id, at_ms)
    return release_for(ActiveFreeze.of(f), spec).to_json()


def meta(control_id: str, at_ms: int = T0) -> Provenance:
    return Provenance(control_id=control_id, actor="ana", reason="ticket 42", issued_at_ms=at_ms)


def rule_mode(control_id: str, rule: str = "user_order_velocity") -> tuple[bytes, bytes]:
    record = RuleMode(rule, RuleModeSetting.SHADOW, meta(control_id))
    return record.key().encode(), dumps(record.to_wire())


def list_entry(control_id: str, entity_id: str, at_ms: int = T0) -> tuple[bytes, bytes]:
    record = ListEntry(
        ListName.ALLOW, ListEntityType.MERCHANT, entity_id, None, False, meta(control_id, at_ms)
    )
    return record.key().encode(), dumps(record.to_wire())
