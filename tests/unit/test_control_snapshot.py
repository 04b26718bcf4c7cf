"""Folding control records into a snapshot, and what a snapshot does to decisions."""

from __future__ import annotations

import dataclasses

from detectors.control import (
    ControlRecord,
    KillSwitch,
    ListEntityType,
    ListEntry,
    ListName,
    Provenance,
    RuleMode,
    RuleModeSetting,
    Snooze,
    Switch,
)
from detectors.control_effects import (
    BLOCK_LIST_RULE,
    Silence,
    block_list_alerts,
    freeze_suppression,
    steer,
)
from detectors.control_snapshot import EMPTY, ControlSnapshot, fold
from detectors.decisions import AlertCandidate, Freeze, Suppression
from detectors.rules import ActionKind, Mode, Severity
from detectors.rules_entities import EntityType
from tests.unit.test_contract_docs import published, validator
from tests.unit.test_engine import ORDER, fired

T = 1_800_000_000_000
META = Provenance("c1", "alice", "test", T)


def entries(*records: ControlRecord) -> list[tuple[str, ControlRecord | None]]:
    return [(r.key(), r) for r in records]


def allow(
    entity_id: str, removed: bool = False, expires: int | None = None, kind: str = "merchant"
) -> ListEntry:
    return ListEntry(
        ListName.ALLOW, ListEntityType(kind), entity_id, expires, removed=removed, meta=META
    )


def test_the_last_record_of_a_key_wins_and_tombstones_remove() -> None:
    snap = fold(
        entries(
            KillSwitch(Switch.ON, META),
            RuleMode("r1", RuleModeSetting.SHADOW, META),
            KillSwitch(Switch.OFF, META),
            RuleMode("r1", RuleModeSetting.OFF, META),
            allow("m-1"),
            allow("m-2"),
            allow("m-1", removed=True),
        )
    )
    assert not snap.kill_switch
    assert snap.rule_mode("r1") is RuleModeSetting.OFF and snap.rule_mode("r2") is None
    assert snap.listed(ListName.ALLOW, ListEntityType.MERCHANT, "m-1", T) is None
    assert snap.listed(ListName.ALLOW, ListEntityType.MERCHANT, "m-2", T) is not None
    assert snap.applied == 7
    gone = fold([("kill-switch", None), ("rule-mode:r1", None)], snap)
    assert gone.rule_mode("r1") is None and gone.applied == 9
    assert EMPTY.records == {}  # the base is never mutated
    assert fold(entries(KillSwitch(Switch.ON, META)), gone).kill_switch


def test_expiry_is_judged_against_the_time_given() -> None:
    snap = fold(
        entries(
            allow("m-1", expires=T + 1000),
            Snooze(ListEntityType.USER, "u-1", None, T + 500, META),
            Snooze(ListEntityType.USER, "u-2", "r1", T + 500, META),
        )
    )
    assert snap.listed(ListName.ALLOW, ListEntityType.MERCHANT, "m-1", T + 999) is not None
    assert snap.listed(ListName.ALLOW, ListEntityType.MERCHANT, "m-1", T + 1000) is None
    assert snap.snoozed(ListEntityType.USER, "u-1", "any", T + 499) is not None
    assert snap.snoozed(ListEntityType.USER, "u-1", "any", T + 500) is None
    assert snap.snoozed(ListEntityType.USER, "u-2", "r1", T) is not None
    assert snap.snoozed(ListEntityType.USER, "u-2", "r2", T) is None


def test_a_saved_snapshot_reads_back_equal() -> None:
    snap = fold(
        entries(
            KillSwitch(Switch.ON, META),
            allow("m:1", expires=T + 5),
            Snooze(ListEntityType.IP, "10.0.0.1", "r1", T + 5, META),
        )
    )
    assert ControlSnapshot.from_wire(snap.to_wire()) == snap


def candidate(entity: EntityType = EntityType.USER, entity_id: str = "u1") -> AlertCandidate:
    cand = fired()[0]
    alert = dataclasses.replace(cand.alert, entity_type=entity, entity_id=entity_id)
    return dataclasses.replace(cand, alert=alert)


def test_without_control_a_decision_is_unchanged() -> None:
    cand = candidate()
    assert steer(EMPTY, cand, T, freezes=True).candidate == cand


def test_rule_off_allow_list_and_snooze_silence_the_alert() -> None:
    cand = candidate(EntityType.USER, "u1")
    rule = cand.alert.rule_id
    cases = {
        Silence.RULE_OFF: RuleMode(rule, RuleModeSetting.OFF, META),
        Silence.ALLOW_LIST: allow("u1", kind="user"),
        Silence.SNOOZE: Snooze(ListEntityType.USER, "u1", rule, T + 10, META),
    }
    for silence, record in cases.items():
        steered = steer(fold(entries(record)), cand, T, freezes=True)
        assert steered.candidate is None and steered.silence is silence
    expired = fold(entries(Snooze(ListEntityType.USER, "u1", rule, T + 10, META)))
    assert steer(expired, cand, T + 10, freezes=True).candidate == cand
    other_rule = fold(entries(Snooze(ListEntityType.USER, "u1", "other", T + 10, META)))
    assert steer(other_rule, cand, T, freezes=True).candidate == cand
    other_user = fold(entries(allow("u2", kind="user")))
    assert steer(other_user, cand, T, freezes=True).candidate == cand


def test_shadow_mode_marks_the_alert_and_suppresses_its_freeze() -> None:
    cand = candidate()
    snap = fold(entries(RuleMode(cand.alert.rule_id, RuleModeSetting.SHADOW, META)))
    steered = steer(snap, cand, T, freezes=True)
    assert steered.candidate is not None and steered.candidate.alert.mode is Mode.SHADOW
    assert steered.suppressed is Suppression.RULE_SHADOW
    assert steer(snap, cand, T, freezes=False).suppressed is None
    enforce = fold(entries(RuleMode(cand.alert.rule_id, RuleModeSetting.ENFORCE, META)))
    assert steer(enforce, cand, T, freezes=True).candidate == cand


def test_the_kill_switch_lets_alerts_through_marked_and_no_freeze() -> None:
    cand = candidate()
    snap = fold(entries(KillSwitch(Switch.ON, META)))
    steered = steer(snap, cand, T, freezes=True)
    assert steered.candidate is not None and steered.suppressed is Suppression.KILL_SWITCH
    assert steered.candidate.alert.to_wire()["suppressed_by"] == "kill_switch"
    alert_only = steer(snap, cand, T, freezes=False)
    assert alert_only.candidate == cand and alert_only.suppressed is None
    assert "suppressed_by" not in cand.alert.to_wire()


def freeze(subject: str) -> Freeze:
    return Freeze(
        "fz_1", ActionKind.FUND_FREEZE, EntityType.MERCHANT, subject, "payouts", "r1",
        Severity.HIGH, "al_1", T + 1, T,
    )  # fmt: skip


def test_a_freeze_subject_has_its_own_exemptions() -> None:
    assert freeze_suppression(EMPTY, freeze("m1"), T) is None
    allowed = fold(entries(allow("m1")))
    assert freeze_suppression(allowed, freeze("m1"), T) is Suppression.ALLOW_LIST
    assert freeze_suppression(allowed, freeze("m2"), T) is None
    snoozed = fold(entries(Snooze(ListEntityType.MERCHANT, "m1", "r1", T + 5, META)))
    assert freeze_suppression(snoozed, freeze("m1"), T) is Suppression.SNOOZE
    assert freeze_suppression(snoozed, freeze("m1"), T + 5) is None
    killed = fold(entries(KillSwitch(Switch.ON, META)))
    assert freeze_suppression(killed, freeze("m2"), T) is Suppression.KILL_SWITCH


def block(entity_id: str, kind: str, expires: int | None = None) -> ListEntry:
    return ListEntry(ListName.BLOCK, ListEntityType(kind), entity_id, expires, False, META)


def test_block_listed_entities_get_an_alert_on_every_event() -> None:
    event = dataclasses.replace(ORDER, occurred_at_ms=T)
    assert block_list_alerts(EMPTY, event, "orders", T) == []
    snap = fold(
        entries(block("d1", "device"), block("m1", "merchant", T + 1), allow("u1", kind="user"))
    )
    assert snap.has_list(ListName.BLOCK) and not EMPTY.has_list(ListName.BLOCK)
    alerts = block_list_alerts(snap, event, "orders", T + 5)
    assert [(a.entity_type, a.entity_id) for a in alerts] == [
        (EntityType.DEVICE, "d1"),
        (EntityType.MERCHANT, "m1"),
    ]
    wire = published(alerts[0]).to_wire()  # the pipeline adds the ruleset_version
    assert wire["rule_id"] == BLOCK_LIST_RULE and wire["evidence"]["list"] == "block"
    assert wire["evidence"]["actor"] == "alice" and wire["trigger_event_id"] == "e1"
    validator("risk-alerts").validate(wire)
    again = block_list_alerts(snap, event, "orders", T + 99)
    assert [a.alert_id for a in again] == [a.alert_id for a in alerts]  # a redelivery: same ids
    later = dataclasses.replace(event, event_id="e2", occurred_at_ms=T + 1)
    assert [a.entity_id for a in block_list_alerts(snap, later, "orders", T + 1)] == ["d1"]
