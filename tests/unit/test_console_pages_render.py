"""The queue's filters (console.filters) and the pages' templates
(console.render): a hostile string in an alert or a filter comes back
escaped, no template renders anything unescaped, and the vendored htmx is
the file its NOTICE names."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from console.filters import (
    AlertStatus,
    Cursor,
    FilterError,
    QueueFilter,
    epoch_ms,
    parse_filter,
)
from console.index_store import timestamp
from console.pages import CHOICES, counted_of
from console.queries import QueueAlert, QueuePage
from console.render import render_text
from console.verdict_pages import merchant_of
from detectors.rules import Mode, Severity
from detectors.rules_entities import EntityType

CONSOLE = Path(__file__).resolve().parents[2] / "console"
SCRIPT = "<script>alert('x')</script>"
SQL = "x' OR '1'='1"
AT = datetime(2026, 11, 28, 10, 15, tzinfo=UTC)


def test_filters_are_parsed_from_get_parameters_and_written_back() -> None:
    query = {
        "rule": " user_order_velocity ",
        "severity": "high",
        "entity_type": "merchant",
        "mode": "shadow",
        "status": "new",
        "since": "2026-11-28T10:15",
        "until": "2026-11-28T11:00:00Z",
        "before": "1796000000000~al_1",
    }
    f = parse_filter(query)
    assert f == QueueFilter(
        rule="user_order_velocity",
        severity=Severity.HIGH,
        entity_type=EntityType.MERCHANT,
        mode=Mode.SHADOW,
        status=AlertStatus.NEW,
        since_ms=int(AT.timestamp() * 1000),
        until_ms=int(AT.timestamp() * 1000) + 45 * 60_000,
        before=Cursor(1_796_000_000_000, "al_1"),
    )
    assert parse_filter(f.params(f.before)) == f
    assert "before" not in f.params() and parse_filter({}).is_empty()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("severity", "urgent", "severity must be one of: low, medium, high, critical"),
        ("entity_type", SCRIPT, "entity type must be one of"),
        ("mode", SQL, "mode must be one of"),
        ("status", "open", "status must be one of"),
        ("since", "yesterday", "since must be a time"),
        ("before", "12~", "page position"),
        ("before", "abc~al_1", "page position"),
        ("rule", "r" * 201, "longer than 200"),
    ],
)
def test_a_bad_filter_is_refused_naming_the_field_never_echoing_it(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(FilterError, match=re.escape(message)) as info:
        parse_filter({name: value})
    assert value not in str(info.value)


def test_a_page_position_is_exact_to_the_millisecond() -> None:
    for ms in (1_796_000_000_123, 1_796_000_000_001, 1_796_000_000_999, 0, 1):
        at = timestamp(ms)
        assert epoch_ms(at) == ms
        assert epoch_ms(at.astimezone(timezone(timedelta(hours=-5)))) == ms
        assert queue_alert(occurred_at=at).cursor == Cursor(ms, "al_1")


def test_times_are_shown_in_utc_whatever_the_database_sends() -> None:
    est = AT.astimezone(timezone(timedelta(hours=-5)))
    html = render_text("_alerts.html", alerts=[queue_alert(occurred_at=est)])
    assert "2026-11-28 10:15:00.000 UTC" in html


def test_a_rule_filter_is_a_value_whatever_it_holds() -> None:
    assert parse_filter({"rule": SQL}).rule == SQL  # a query parameter, never SQL text


def queue_alert(**changes: Any) -> QueueAlert:
    fields: dict[str, Any] = {
        "alert_id": "al_1",
        "rule_id": "user_order_velocity",
        "severity": "high",
        "entity_type": "user",
        "entity_id": "u-1",
        "mode": "enforce",
        "status": "new",
        "occurred_at": AT,
        "observed": 8,
        "threshold": 8,
    }
    return QueueAlert(**{**fields, **changes})


def test_hostile_strings_in_an_alert_come_back_escaped() -> None:
    evidence = {SCRIPT: SQL, "nested": {"k": SCRIPT}, "value": 8}
    alert = {
        "alert_id": SCRIPT,
        "rule_id": SCRIPT,
        "rule_version": 1,
        "severity": "high",
        "entity_type": "user",
        "entity_id": f'"><img src=x onerror=alert(1)>{SQL}',
        "mode": "enforce",
        "ruleset_version": "a" * 64,
        "occurred_at": AT,
        "detected_at": AT,
        "status": "new",
        "assignee": None,
        "verdict": None,
    }
    body = {"evidence": evidence, "observed": 8, "threshold": 8, "trigger_event_id": SCRIPT}
    body["counted_event_ids"] = ["ev-1", SCRIPT]
    html = render_text(
        "alert.html",
        user=None,
        csrf_token="",
        alert=alert,
        body=body,
        window={},
        evidence=evidence,
        counted=counted_of(body),
        description=SCRIPT,
        others=[queue_alert(alert_id=SCRIPT, entity_id=SCRIPT)],
        freezes=[],
        verdicts=[{"decided_at": None, "verdict": "unsure", "actor": SCRIPT, "note": SQL}],
        verdict_kinds=["true_positive", "false_positive", "unsure"],
        form_token=SCRIPT,
        sent=SCRIPT,
        can_judge=True,
        me="ana",
        back=f"/?rule={SCRIPT}",
    )
    assert "<script>alert" not in html and "<img" not in html
    assert html.count('name="verdict"') == 3  # the analyst's three buttons
    counted = html.split('<ol class="counted">')[1].split("</ol>")[0]
    assert counted.count("<li>") == 2 and counted.count("(trigger)") == 1
    assert counted_of({"counted_event_ids": "ev-1"}) == [] and counted_of({}) == []
    assert "assign to me" in html and "/unassign" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "x&#39; OR &#39;1&#39;=&#39;1" in html
    assert "/alerts/%3Cscript%3Ealert%28%27x%27%29%3C/script%3E" in html  # a link, encoded


def test_a_hostile_filter_comes_back_escaped_in_the_form_and_the_links() -> None:
    f = QueueFilter(rule=f'"><script>alert(1)</script>{SQL}')
    page = QueuePage((queue_alert(),), next_before=Cursor(1, SCRIPT))
    html = render_text(
        "queue.html",
        user=None,
        csrf_token="",
        page=page,
        filter=f,
        params=f.params(),
        choices=CHOICES,
        newer_query=f.query(),
        bulk=True,
        assign=True,
        me="ana",
        back=f"/?{f.query()}",
        form_token=SCRIPT,
        verdict_kinds=["true_positive", "false_positive", "unsure"],
        bulk_sent=SCRIPT,
    )
    assert "<script>alert" not in html
    assert 'type="checkbox" name="alert_id" value="al_1" form="bulk"' in html
    assert "assign to me" in html and 'id="bulk"' in html
    assert 'value="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;x&#39; OR' in html
    assert "rule=%22%3E%3Cscript%3Ealert%281%29" in html  # the links' query, encoded


def test_no_template_marks_anything_safe_or_turns_escaping_off() -> None:
    templates = sorted((CONSOLE / "templates").glob("*.html"))
    assert templates
    for path in templates:
        text = path.read_text()
        assert not re.search(r"\|\s*safe\b|autoescape\s+false|Markup", text), path.name


def test_the_vendored_htmx_is_the_file_its_notice_names() -> None:
    notice = (CONSOLE / "static" / "NOTICE").read_text()
    digest = re.search(r"SHA-256 of htmx.min.js: ([0-9a-f]{64})", notice)
    assert digest and "htmx 2.0.11" in notice and "Zero-Clause BSD" in notice
    data = (CONSOLE / "static" / "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest.group(1)
    assert b"//unpkg" not in (CONSOLE / "templates" / "base.html").read_bytes()


def test_a_verdict_names_the_merchant_its_alert_names() -> None:
    merchant = {"entity_type": "merchant", "entity_id": "m-1"}
    user = {"entity_type": "user", "entity_id": "u-1"}
    assert merchant_of(merchant, {}) == "m-1"
    keyed = {"evidence": {"key": {"user": "u-1", "merchant": "m-9"}}}
    assert merchant_of(user, keyed) == "m-9"
    assert merchant_of(user, {"evidence": {"key": "m-9"}}) is None
    assert merchant_of(user, {"evidence": [1]}) is None and merchant_of(user, {}) is None
