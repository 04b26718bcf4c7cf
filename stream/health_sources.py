"""What counts against a merchant's health, from a judged batch and the
control snapshot (stream.health_feed): its freezes, its alerts and its
block-list entry."""

from __future__ import annotations

from detectors.control_snapshot import ControlSnapshot
from detectors.decisions import Alert
from detectors.health_model import HealthModel
from detectors.health_score import Violation, ViolationSource
from detectors.list_names import ListEntityType, ListName
from detectors.rules import Mode, Severity
from detectors.rules_entities import EntityType
from stream.batch_outputs import BatchResult
from stream.store.health_ledger import LedgerEntry

__all__ = [
    "BLOCK_LIST_SEVERITY",
    "block_listed",
    "freeze_violations",
    "merchant_alerts",
    "named_merchant",
]

# A merchant on the block list: the severity of the list's own alert.
BLOCK_LIST_SEVERITY = Severity.HIGH


def named_merchant(entity_type: EntityType, entity_id: str, alert: Alert | None) -> str | None:
    """The merchant a freeze or an alert is about: its subject or entity, or
    the merchant its alert's evidence names (a rule keyed on [user, merchant])."""
    if entity_type is EntityType.MERCHANT:
        return entity_id
    key = alert.evidence.get("key") if alert is not None else None
    if isinstance(key, dict) and isinstance(key.get(EntityType.MERCHANT.value), str):
        return str(key[EntityType.MERCHANT.value])
    return None


def freeze_violations(
    result: BatchResult, model: HealthModel, since: int = 0
) -> list[tuple[str, LedgerEntry]]:
    """(trigger event id, violation) of each published freeze on a merchant,
    from the `since`-th freeze of the result on."""
    out = []
    for f in result.freezes[since:]:
        alert = result.freeze_alerts.get(f.reason_alert_id)
        merchant = named_merchant(f.subject_type, f.subject_id, alert)
        if merchant is None or alert is None:
            continue
        at = alert.occurred_at_ms
        evidence = (alert.alert_id,)
        v = Violation(f.freeze_id, ViolationSource.FREEZE, f.severity, at, evidence, f.rule_id)
        points = model.points.get(f.severity, 0)
        entry = LedgerEntry(merchant, v, points, at + model.expiry_of(f.severity))
        out.append((alert.trigger_event_id, entry))
    return out


def merchant_alerts(result: BatchResult, since: int = 0) -> list[tuple[str, str, str, int]]:
    """(trigger event id, merchant, alert id, event ms) of each enforced
    alert of the batch naming a merchant, from the result's `since`-th on
    (shadow rules are on trial: their alerts count against nobody)."""
    out = []
    for alert in result.published_alerts[since:]:
        merchant = named_merchant(alert.entity_type, alert.entity_id, alert)
        if merchant is not None and alert.mode is Mode.ENFORCE:
            out.append((alert.trigger_event_id, merchant, alert.alert_id, alert.occurred_at_ms))
    return out


def block_listed(control: ControlSnapshot, merchant: str, at_ms: int) -> list[Violation]:
    """The merchant's block-list entry, active at `at_ms`, as a violation:
    it counts while the entry stands (the control snapshot is the record of
    it, so nothing is written), dated at the entry's issue or the event,
    whichever is earlier."""
    entry = control.listed(ListName.BLOCK, ListEntityType.MERCHANT, merchant, at_ms)
    if entry is None:
        return []
    meta = entry.meta
    since = min(meta.issued_at_ms, at_ms)
    return [Violation(meta.control_id, ViolationSource.BLOCK_LIST, BLOCK_LIST_SEVERITY, since)]
