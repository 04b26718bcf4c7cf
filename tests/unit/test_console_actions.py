"""The console's actions, pure parts: the two-person rule's setting and
decision (console.two_person), the action forms → control records
(console.action_forms), the lists page's filter (console.list_pages) and
the templates of the action pages with hostile text in them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from console.action_forms import (
    FormError,
    control_id_for,
    list_entry_record,
    provenance,
    reason_of,
    release_record,
    snooze_record,
)
from console.approvals import ApprovalError, kept_record, restamped
from console.index_store import timestamp
from console.list_pages import ListFilter, parse_list_filter, standing
from console.render import render_text
from console.settings import console_from_env, console_to_env
from console.two_person import ReleaseThresholds, needs_second_person, refusal_to_approve
from console.users import Role, User
from detectors.control import MAX_REASON, ListEntry, ListName, Release, Snooze
from detectors.errors import ConfigError
from detectors.list_names import ListEntityType
from detectors.release_types import ReleaseType
from detectors.timestamps import format_rfc3339_ms

NOW = 1_796_000_000_000
HOUR = 3_600_000
SCRIPT = "<script>alert('x')</script>"
SQL = "x' OR '1'='1"
FREEZE = "fz_" + "ab" * 16


def test_the_threshold_setting_is_money_per_currency_and_round_trips() -> None:
    t = ReleaseThresholds.parse(" USD:50000, EUR:25000 ,JPY:0,")
    assert t.limits == (("EUR", 25000), ("JPY", 0), ("USD", 50000))
    assert str(t) == "EUR:25000,JPY:0,USD:50000"
    assert ReleaseThresholds.parse(str(t)) == t
    assert ReleaseThresholds.parse("") == ReleaseThresholds()
    env = {"FRAUD_CONSOLE_TWO_PERSON_RELEASE": "EUR:50000,USD:60000"}
    s = console_from_env(env)
    assert s.two_person_release.limit("USD") == 60000
    assert console_from_env(console_to_env(s)) == s


@pytest.mark.parametrize(
    "text",
    ["EUR", "EUR:", "eur:5", "EURO:5", "EUR:-5", "EUR:5.5", "EUR:1e3", "EUR:5,EUR:6", "EUR:٣"],
)
def test_a_bad_threshold_setting_is_refused_naming_the_part(text: str) -> None:
    with pytest.raises(ValueError):
        ReleaseThresholds.parse(text)
    with pytest.raises(ConfigError, match="FRAUD_CONSOLE_TWO_PERSON_RELEASE"):
        console_from_env({"FRAUD_CONSOLE_TWO_PERSON_RELEASE": text})


def test_a_fund_release_needs_two_persons_above_its_limit_or_of_unknown_size() -> None:
    t = ReleaseThresholds.parse("EUR:50000")
    assert not needs_second_person("fund", 50000, "EUR", t)  # at the limit: one person
    assert needs_second_person("fund", 50001, "EUR", t)
    assert needs_second_person("fund", 1, "USD", t)  # a currency not named
    assert needs_second_person("fund", None, None, t)  # all of a merchant's payouts
    assert needs_second_person("fund", 1, "EUR", ReleaseThresholds())  # unset: always
    assert not needs_second_person("benefit", None, None, ReleaseThresholds())


def test_only_another_approver_may_decide_a_request() -> None:
    def user(name: str, role: Role) -> User:
        return User(name, role, "hash")

    assert refusal_to_approve("ana", user("amy", Role.APPROVER)) is None
    assert refusal_to_approve("ana", user("root", Role.ADMIN)) is None
    assert "second person" in str(refusal_to_approve("amy", user("amy", Role.APPROVER)))
    assert "approver" in str(refusal_to_approve("ana", user("bob", Role.ANALYST)))


def form(**fields: Any) -> dict[str, Any]:
    return {"form_token": "tok-1", "reason": "customer called", **fields}


def test_the_reason_is_required_bounded_and_kept_as_text() -> None:
    assert reason_of({"reason": f" {SCRIPT}\r\n{SQL} "}) == f"{SCRIPT}  {SQL}"
    for bad in ({}, {"reason": "   "}, {"reason": "x" * (MAX_REASON + 1)}, {"reason": "a\x00b"}):
        with pytest.raises(FormError, match="reason"):
            reason_of(bad)
    with pytest.raises(FormError, match="at most 512"):
        reason_of({"reason": "x" * 1_000_000})
    with pytest.raises(FormError, match="text expected"):
        reason_of({"reason": object()})  # an uploaded file where text belongs


def test_the_control_id_comes_from_the_form_token_and_the_user() -> None:
    a = control_id_for("ana", "release:fz", "tok-1")
    assert a == control_id_for("ana", "release:fz", "tok-1")  # a form sent twice
    assert a.startswith("cn_") and len(a) == 35
    others = {control_id_for("amy", "release:fz", "tok-1"), control_id_for("ana", "x", "tok-1")}
    assert a not in others | {control_id_for("ana", "release:fz", "tok-2")}
    with pytest.raises(FormError, match="form_token"):
        provenance({"reason": "r"}, "ana", "x", NOW)


def test_a_release_form_becomes_the_release_record_the_workers_read() -> None:
    meta = provenance(form(), "ana", "release", NOW)
    fields = {"release_type": "appeal_upheld", "reason_code": "kyc_ok"}
    record = release_record(form(**fields), FREEZE, meta)
    assert record == Release(FREEZE, ReleaseType.APPEAL_UPHELD, "kyc_ok", meta)
    assert record.meta.reason == "customer called" and record.meta.actor == "ana"
    bad_forms = [
        {"release_type": "expired", "reason_code": "x"},  # the workers' own
        {"release_type": "manual", "reason_code": "Not A Code"},
        {"release_type": "manual", "reason_code": SCRIPT},
        {"release_type": "manual"},
    ]
    for bad in bad_forms:
        with pytest.raises(FormError):
            release_record(form(**bad), FREEZE, meta)
    with pytest.raises(FormError, match="freeze_id"):
        release_record(form(**fields), "fz_" + SQL, meta)


def test_list_entries_are_added_with_an_expiry_and_removed() -> None:
    meta = provenance(form(), "ana", "list", NOW)
    fields = {"list": "allow", "entity_type": "merchant", "entity_id": f"m-{SQL}"}
    added = list_entry_record(form(**fields, expires="7d"), meta, removed=False)
    week = NOW + 168 * HOUR
    assert added == ListEntry(
        ListName.ALLOW, ListEntityType.MERCHANT, f"m-{SQL}", week, False, meta
    )
    at = format_rfc3339_ms(NOW + HOUR)
    assert list_entry_record(form(**fields, expires=at), meta, False).expires_at_ms == NOW + HOUR
    removed = list_entry_record(form(**fields, expires="7d"), meta, removed=True)
    assert removed.removed and removed.expires_at_ms is None
    bad_forms = [
        {**fields, "list": "vip"},
        {**fields, "entity_type": "planet"},
        {**fields, "entity_id": ""},
        {**fields, "entity_id": "x" * 129},
        {**fields, "expires": "soon"},
        {**fields, "expires": format_rfc3339_ms(NOW - HOUR)},  # the contract: after issued_at
        {**fields, "expires": "1000000w"},  # past what a timestamp can write: 400, not 500
    ]
    for bad in bad_forms:
        with pytest.raises(FormError):
            list_entry_record(form(**bad), meta, removed=False)


def test_a_snooze_is_added_until_a_time_and_ended_by_one_that_expires_at_once() -> None:
    meta = provenance(form(), "ana", "snooze", NOW)
    fields = {"entity_type": "user", "entity_id": "u-1", "rule_id": "user_order_velocity"}
    snooze = snooze_record(form(**fields, until="2h"), meta, end=False)
    assert snooze == Snooze(ListEntityType.USER, "u-1", "user_order_velocity", NOW + 2 * HOUR, meta)
    every_rule = snooze_record(form(**{**fields, "rule_id": ""}, until="2h"), meta, end=False)
    assert every_rule.rule_id is None
    ended = snooze_record(form(**fields), meta, end=True)
    assert ended.key() == snooze.key() and not ended.active(NOW + 1) and ended.active(NOW)
    for until in ("", "31d", "tomorrow"):
        with pytest.raises(FormError):
            snooze_record(form(**fields, until=until), meta, end=False)
    with pytest.raises(FormError, match="rule_id"):
        snooze_record(form(**{**fields, "rule_id": "*"}, until="2h"), meta, end=False)


def test_the_lists_filter_takes_known_lists_and_types_only() -> None:
    assert parse_list_filter({}) == ListFilter()
    f = parse_list_filter({"list": "allow", "entity_type": "merchant", "entity_id": " m-1 "})
    assert f == ListFilter("allow", "merchant", "m-1")
    assert f.patterns() == ["list:allow:merchant:%"]
    assert ListFilter().patterns() == ["list:%:%:%", "snooze:%:%"]
    assert ListFilter(entity_type="user").patterns() == ["list:%:user:%", "snooze:user:%"]
    for bad in ({"list": SQL}, {"entity_type": SCRIPT}, {"entity_id": "m-1"}):
        with pytest.raises(FormError):
            parse_list_filter(bad)
    with pytest.raises(FormError, match="at most 128"):
        parse_list_filter({"entity_type": "user", "entity_id": "x" * 1_000_000})


def _row(record: ListEntry | Snooze) -> dict[str, Any]:
    return {
        "control_id": record.meta.control_id,
        "kind": record.kind.value,
        "record_key": record.key(),
        "actor": record.meta.actor,
        "reason": record.meta.reason,
        "issued_at": timestamp(record.meta.issued_at_ms),
        "body": record.to_wire(),
    }


def test_removed_and_expired_records_are_shown_only_when_asked_for() -> None:
    meta = provenance(form(reason=SCRIPT), "ana", "x", NOW)
    entity = (ListEntityType.MERCHANT, SQL)
    rows = [
        _row(ListEntry(ListName.BLOCK, *entity, None, False, meta)),
        _row(ListEntry(ListName.ALLOW, *entity, None, True, meta)),
        _row(Snooze(*entity, None, NOW + HOUR, meta)),
    ]
    assert [r["standing"] for r in standing(rows, NOW, everything=True)] == [True, False, True]
    assert len(standing(rows, NOW + 2 * HOUR, everything=False)) == 1
    page = render_text(
        "lists.html",
        user=User("ana", Role.ANALYST, "h"),
        csrf_token="c",
        entries=standing(rows, NOW, everything=True),
        filter=ListFilter(entity_id=SCRIPT),
        lists=["allow"],
        entity_types=["merchant"],
        can_act=True,
        form_token="t",
        sent=SCRIPT,
        limit=200,
    )
    assert SCRIPT not in page and "&lt;script&gt;" in page
    assert page.count('value="remove"') == 1 and page.count('value="end"') == 1


def test_the_approvals_page_shows_requests_as_text_and_no_buttons_on_your_own() -> None:
    at = datetime(2026, 11, 28, tzinfo=UTC)
    request = {
        "request_id": "cn_1",
        "kind": "release",
        "target": f"release:{FREEZE}",
        "summary": SCRIPT,
        "requested_by": "ana",
        "requested_at": at,
        "reason": SQL,
        "state": "pending",
        "decided_by": None,
        "decided_at": None,
        "decision_reason": "",
    }
    context = {"csrf_token": "c", "decided": [], "requested": SCRIPT, "done": ""}
    admin = User("ana", Role.ADMIN, "h")
    mine = render_text("approvals.html", user=admin, pending=[request], can_decide=True, **context)
    assert SCRIPT not in mine and "your own request" in mine and "/approve" not in mine
    amy = User("amy", Role.APPROVER, "h")
    theirs = render_text("approvals.html", user=amy, pending=[request], can_decide=True, **context)
    assert "/approvals/cn_1/approve" in theirs and "/approvals/cn_1/reject" in theirs


def test_an_approved_record_is_the_kept_one_issued_at_the_approval() -> None:
    meta = provenance(form(), "ana", "release", NOW)
    fields = {"release_type": "manual", "reason_code": "kyc_ok"}
    kept = release_record(form(**fields), FREEZE, meta).to_wire()
    approved = restamped(kept, NOW + HOUR)
    assert approved == Release(
        FREEZE, ReleaseType.MANUAL, "kyc_ok", replace(meta, issued_at_ms=NOW + HOUR)
    )
    with pytest.raises(ApprovalError) as refused:
        kept_record({**kept, "reason_code": "Not A Code"}, NOW)
    assert refused.value.status == 409
