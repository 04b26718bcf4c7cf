"""The rules page's pure logic (console.rules_view: mode resolution, fire
rate), the bulk verdict's cap (console.bulk_verdicts.chosen_alerts), who
may take or give back a case (console.assignment.decide), and the rules
template's escaping."""

from __future__ import annotations

import pytest

from console.assignment import CaseAction, Change, Refusal, decide
from console.bulk_verdicts import BULK_CAP, BulkError, chosen_alerts
from console.filters import AlertStatus, Assigned, parse_filter
from console.render import render_text
from console.rules_page import RulesInEffect, control_id_for, in_effect
from console.rules_view import EffectiveMode, effective_mode, fires_per_hour, rule_views
from detectors.control import Provenance, RuleMode, RuleModeSetting
from detectors.rules import Mode
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.verdict_scoring import VerdictScore

SCRIPT = "<script>alert('x')</script>"
BOOK = load_rulebook(Settings())  # the built-in rule file


@pytest.mark.parametrize(
    ("file_mode", "override", "expected"),
    [
        (Mode.ENFORCE, None, EffectiveMode.ENFORCE),
        (Mode.SHADOW, None, EffectiveMode.SHADOW),
        (Mode.ENFORCE, RuleModeSetting.SHADOW, EffectiveMode.SHADOW),
        (Mode.SHADOW, RuleModeSetting.SHADOW, EffectiveMode.SHADOW),
        (Mode.ENFORCE, RuleModeSetting.OFF, EffectiveMode.OFF),
        (Mode.SHADOW, RuleModeSetting.OFF, EffectiveMode.OFF),
        # `enforce` means "as the rule file says": it never promotes a shadow rule.
        (Mode.ENFORCE, RuleModeSetting.ENFORCE, EffectiveMode.ENFORCE),
        (Mode.SHADOW, RuleModeSetting.ENFORCE, EffectiveMode.SHADOW),
    ],
)
def test_a_rules_mode_is_its_files_as_the_standing_record_overrides_it(
    file_mode: Mode, override: RuleModeSetting | None, expected: EffectiveMode
) -> None:
    assert effective_mode(file_mode, override) is expected


def test_the_fire_rate_is_the_alerts_of_the_window_per_hour() -> None:
    assert fires_per_hour(48) == 2.0
    assert fires_per_hour(0) == 0.0
    assert fires_per_hour(3, window_ms=1_800_000) == 6.0
    with pytest.raises(ValueError, match="positive"):
        fires_per_hour(1, window_ms=0)


def mode_record(rule_id: str, mode: RuleModeSetting) -> RuleMode:
    return RuleMode(rule_id, mode, Provenance("c-1", "olga", "noisy", 0))


def test_each_rule_in_effect_gets_its_mode_fires_and_precision() -> None:
    first, second = BOOK.rules[0], BOOK.rules[1]
    views = rule_views(
        BOOK.rules,
        {first.rule_id: mode_record(first.rule_id, RuleModeSetting.OFF)},
        {first.rule_id: 240, "a rule not in effect": 9},
        [VerdictScore(first.rule_id, 3, 1, 5), VerdictScore("gone", 1, 0, 0)],
    )
    assert [v.rule_id for v in views] == [r.rule_id for r in BOOK.rules]
    one, two = views[0], views[1]
    assert (one.mode, one.fires_24h, one.per_hour, one.precision) == (
        EffectiveMode.OFF,
        240,
        10.0,
        0.75,  # 3 of 4: the 5 unsure count neither way
    )
    assert one.override is not None and one.override.meta.actor == "olga"
    assert (two.mode.value, two.fires_24h, two.precision) == (second.mode.value, 0, None)
    assert two.description == second.description.strip() and two.version == second.version


def test_a_published_ruleset_is_in_effect_else_the_rules_file() -> None:
    assert in_effect(None, BOOK) == RulesInEffect(BOOK.rules, BOOK.digest, None)
    assert in_effect(None, None) == RulesInEffect((), "", None)


def test_a_forms_control_id_is_derived_from_its_token() -> None:
    a, b = (
        control_id_for("console:olga:rule-mode:r:t1"),
        control_id_for("console:olga:rule-mode:r:t2"),
    )
    assert a == control_id_for("console:olga:rule-mode:r:t1") and a != b
    assert a.startswith("cs_") and len(a) <= 128


def test_bulk_verdicts_take_distinct_ids_and_refuse_more_than_the_cap() -> None:
    assert chosen_alerts(["a", "b", "a"]) == ("a", "b")
    assert len(chosen_alerts([f"al_{n}" for n in range(BULK_CAP)])) == BULK_CAP
    with pytest.raises(BulkError, match=f"At most {BULK_CAP}"):
        chosen_alerts([f"al_{n}" for n in range(BULK_CAP + 1)])
    with pytest.raises(BulkError, match="at least one"):
        chosen_alerts([])
    with pytest.raises(BulkError, match="not one this console shows"):
        chosen_alerts(["x" * 201])
    with pytest.raises(BulkError, match="not text"):
        chosen_alerts(["a", b"b"])


@pytest.mark.parametrize(
    ("action", "status", "current", "actor", "override", "expected"),
    [
        (CaseAction.ASSIGN, "new", None, "ana", False, Change("ana", AlertStatus.ASSIGNED)),
        (CaseAction.ASSIGN, "assigned", "ana", "ana", False, None),
        (CaseAction.ASSIGN, "assigned", "bob", "ana", False, Refusal(409, "")),
        (CaseAction.ASSIGN, "assigned", "bob", "olga", True, Change("olga", AlertStatus.ASSIGNED)),
        (CaseAction.ASSIGN, "closed", None, "ana", True, Refusal(409, "")),
        (CaseAction.UNASSIGN, "assigned", "ana", "ana", False, Change(None, AlertStatus.NEW)),
        (CaseAction.UNASSIGN, "new", None, "ana", False, None),
        (CaseAction.UNASSIGN, "assigned", "bob", "ana", False, Refusal(403, "")),
        (CaseAction.UNASSIGN, "assigned", "bob", "olga", True, Change(None, AlertStatus.NEW)),
    ],
)
def test_who_may_take_or_give_back_a_case(
    action: CaseAction,
    status: str,
    current: str | None,
    actor: str,
    override: bool,
    expected: Change | Refusal | None,
) -> None:
    got = decide(action, status, current, actor, override)
    if isinstance(expected, Refusal):
        assert isinstance(got, Refusal) and got.status == expected.status
    else:
        assert got == expected


def test_the_assignment_filter_is_a_choice() -> None:
    assert parse_filter({"assigned": "me"}).assigned is Assigned.ME
    assert parse_filter({"assigned": "none"}).params() == {"assigned": "none"}
    with pytest.raises(ValueError, match="assigned must be one of: me, none"):
        parse_filter({"assigned": SCRIPT})


def test_the_rules_page_renders_hostile_records_as_text() -> None:
    rule = BOOK.rules[0]
    record = RuleMode(rule.rule_id, RuleModeSetting.SHADOW, Provenance("c", SCRIPT, SCRIPT, 0))
    views = rule_views(BOOK.rules[:1], {rule.rule_id: record}, {}, [])
    html = render_text(
        "rules.html",
        user=None,
        csrf_token="",
        rules=views,
        effect=in_effect(None, BOOK),
        settings=[m.value for m in RuleModeSetting],
        can_set=True,
        form_token=SCRIPT,
        sent=SCRIPT,
        max_reason=512,
    )
    assert "<script>alert" not in html
    assert "set by &lt;script&gt;" in html and BOOK.digest in html
    assert html.count('<option value="shadow" selected>') == 1
