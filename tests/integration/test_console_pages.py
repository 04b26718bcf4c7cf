"""The console's pages in a real browser: Playwright drives Debian's
chromium (`executable_path`, never a downloaded build) against the real
console web app on a real PostgreSQL, its rows written by the indexer's own
code (`console.mapping` + `console.index_store`) from records built with
the workers' types. The pages read only the database; a verdict goes to a real Kafka."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import psycopg
import pytest
from playwright.async_api import Browser, Page, expect

from console.app import Console
from console.index_store import write_rows
from console.mapping import index_record
from console.rows import Position, Source
from console.settings import ConsoleSettings
from detectors.control import Snooze
from detectors.events import Topic
from detectors.list_names import ListEntityType
from detectors.rules import ActionKind
from detectors.timestamps import format_rfc3339_ms
from detectors.verdicts import Verdict, VerdictKind, parse_verdict
from stream import kafka_io
from stream.codec import SourceRecord
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store_wiring import open_store
from stream.topics import create_all_topics
from tests.console_records import T0, alert, dumps, freeze, list_entry, meta
from tests.integration.console_site import (
    browser_page,
    console_database,
    index_records,
    served,
    users_yaml,
)
from tests.integration.services import Services, free_port
from tests.store_cases.requests import process

PASSWORD = "a long analyst password"
HOSTILE = "<script>alert('pwned')</script>x' OR '1'='1"
MINUTE = 60_000
DAY = 86_400_000
RULE, OTHER_RULE = "user_order_velocity_10m", "device_order_velocity_1h"  # the built-in file's


@dataclass
class Site:
    base: str
    url: str
    browser: Browser
    settings: Settings


def records() -> list[tuple[Source, bytes]]:
    """60 alerts a minute apart (the newest is n=59; 9 and 10 share a time,
    across the first page's end), one with hostile evidence, and a fund
    freeze raised by alert 59."""
    alerts = [
        alert(
            n,
            at_ms=T0 + max(n, 10) * MINUTE if n >= 9 else T0 + n * MINUTE,
            rule=OTHER_RULE if n % 3 == 0 else RULE,
            user="u-1" if n % 2 else "",
        )
        for n in range(60)
    ]
    wires = [a.to_wire() for a in alerts]
    wires[5]["evidence"] = {HOSTILE: HOSTILE, "value": 8}
    out = [(Source.ALERTS, dumps(w)) for w in wires]
    fz = freeze(59, ActionKind.FUND_FREEZE, at_ms=T0 + 59 * MINUTE, amount=5000)
    return [*out, (Source.FUND_FREEZES, dumps(fz.to_wire()))]


async def index(url: str, items: list[tuple[Source, bytes]]) -> None:
    await index_records(url, [(source, None, value) for source, value in items])


@pytest.fixture(scope="module")
async def site(
    postgres_port: int, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    url = console_database(postgres_port, "pages")
    await index(url, records())
    users = tmp_path_factory.mktemp("console") / "users.yaml"
    users.write_text(users_yaml(PASSWORD, {"ana": "analyst", "vic": "viewer", "lou": "viewer"}))
    port = free_port()
    settings = services.settings()  # verdicts go to a real Kafka
    await create_all_topics(settings)
    console_settings = ConsoleSettings(
        database_url=url, users_file=users, web_port=port, login_max_failures=3
    )
    console = Console(settings, console_settings)
    async with served(console, port) as browser:
        yield Site(f"http://127.0.0.1:{port}", url, browser, settings)


@pytest.fixture
async def page(site: Site) -> AsyncIterator[Page]:
    async with browser_page(site.browser) as (page, errors):
        yield page
    # No Content-Security-Policy violation, no script error (a 401 or 403
    # a test provokes on purpose is logged by the browser as a failed load).
    assert [e for e in errors if "Failed to load resource" not in e] == []


async def log_in(page: Page, base: str, password: str = PASSWORD, user: str = "ana") -> None:
    await page.goto(base + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")


async def test_without_a_login_every_page_sends_to_the_login_page(site: Site, page: Page) -> None:
    for path in ("/", "/alerts/al_1", "/?severity=high"):
        response = await page.goto(site.base + path)
        assert response is not None and response.ok
        assert page.url.startswith(site.base + "/login?next=")
        await expect(page.locator("h1")).to_have_text("Log in")
    await log_in(page, site.base, password="not the password")
    await expect(page.locator(".error")).to_have_text("Wrong username or password.")


async def test_an_analyst_logs_in_filters_the_queue_opens_an_alert_and_logs_out(
    site: Site, page: Page
) -> None:
    await log_in(page, site.base)
    await expect(page).to_have_url(site.base + "/")
    rows = page.locator("tr.alert-row")
    await expect(rows).to_have_count(50)  # a page
    await expect(rows.first).to_contain_text(f"al_{59:032x}")  # newest first
    await expect(rows.last).to_contain_text(f"al_{10:032x}")
    await expect(page.locator(".who")).to_have_text("ana (analyst)")
    await page.click("a[rel=next]")  # older: the page after the last alert shown
    await expect(rows).to_have_count(10)
    await expect(rows.first).to_contain_text(f"al_{9:032x}")  # same time as 10, not lost
    await expect(rows.last).to_contain_text(f"al_{0:032x}")
    await expect(page.locator("a[rel=next]")).to_have_count(0)
    await page.click("text=newest")

    await page.select_option("select[name=severity]", "high")
    await page.fill("input[name=rule]", RULE)
    await page.click(".filters button[type=submit]")
    await expect(page).to_have_url(re.compile(r"severity=high"))
    await expect(rows).to_have_count(20)  # odd (high), and not a multiple of 3 (RULE)
    for text in await rows.all_inner_texts():
        assert "high" in text and RULE in text and OTHER_RULE not in text

    await page.click(f"text=al_{59:032x}")
    await expect(page.locator("h1")).to_contain_text(f"al_{59:032x}")
    facts = page.locator("dl.facts")
    await expect(facts).to_contain_text(RULE)
    await expect(facts).to_contain_text("a" * 64)  # ruleset_version
    await expect(page.locator(".measure")).to_contain_text("8 vs 8")
    await expect(page.locator(".description")).to_contain_text("Orders per user in a sliding")
    await expect(page.locator("table.evidence")).to_contain_text("aggregate")
    await expect(page.locator("table.freezes")).to_contain_text("5000 EUR")
    await expect(page.locator("table.alerts tr.alert-row").first).to_contain_text("u-1")

    await page.click("text=Log out")
    await expect(page).to_have_url(site.base + "/login")
    await page.goto(site.base + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next="))


async def test_hostile_evidence_and_filters_are_shown_as_text(site: Site, page: Page) -> None:
    await log_in(page, site.base)
    await page.goto(f"{site.base}/alerts/al_{5:032x}")
    evidence = page.locator("table.evidence")
    await expect(evidence).to_contain_text(HOSTILE)
    assert await page.locator("main script").count() == 0
    await page.goto(site.base + "/?rule=" + HOSTILE.replace("'", "%27").replace("<", "%3C"))
    await expect(page.locator("input[name=rule]")).to_have_value(HOSTILE)
    await expect(page.locator("tr.alert-row")).to_have_count(0)  # a value, never SQL
    await expect(page.locator("td.empty")).to_have_text("No alerts.")


async def test_a_post_without_the_csrf_token_is_refused(site: Site, page: Page) -> None:
    await log_in(page, site.base)
    await expect(page).to_have_url(site.base + "/")
    refused = await page.request.post(site.base + "/logout", form={"x": "1"})
    assert refused.status == 403
    token = await page.locator("input[name=csrf_token]").first.input_value()
    wrong = await page.request.post(site.base + "/logout", form={"csrf_token": token[:-1]})
    assert wrong.status == 403
    await page.goto(site.base + "/")  # still logged in
    await expect(page.locator("tr.alert-row")).to_have_count(50)


async def test_the_queue_counts_alerts_newer_than_its_page(site: Site, page: Page) -> None:
    await log_in(page, site.base)
    await expect(page.locator("#newer")).to_have_attribute("hx-trigger", "every 10s")
    await index(site.url, [(Source.ALERTS, dumps(alert(100, at_ms=T0 + 100 * MINUTE).to_wire()))])
    # What the 10 s poll does, now: htmx fetches the count into #newer.
    await page.evaluate(
        "htmx.ajax('GET', document.querySelector('#newer').getAttribute('hx-get'), '#newer')"
    )
    await expect(page.locator("#newer a.newer")).to_have_text("1 new alert · show")
    await page.click("#newer a.newer")
    await expect(page.locator("tr.alert-row").first).to_contain_text(f"al_{100:032x}")


async def published_verdicts(settings: Settings, alert_id: str) -> list[tuple[Verdict, bytes]]:
    found = await kafka_io.read_from(settings.kafka_bootstrap, settings.topics.verdicts)
    mine = [(parse_verdict(r.value), r.value) for r in found if r.key == alert_id.encode()]
    return mine


async def test_an_analyst_judges_an_alert_the_verdict_is_published_and_then_listed(
    site: Site, page: Page
) -> None:
    alert_id = f"al_{58:032x}"
    await log_in(page, site.base)
    await expect(page).to_have_url(site.base + "/")
    await page.goto(f"{site.base}/alerts/{alert_id}")
    await expect(page.locator("table.verdicts")).to_contain_text("No verdict yet.")
    await page.fill("form.verdict input[name=note]", HOSTILE)
    await page.click("form.verdict button[value=true_positive]")
    await expect(page.locator(".notice")).to_contain_text("true_positive")
    ((verdict, raw),) = await published_verdicts(site.settings, alert_id)
    assert (verdict.verdict, verdict.actor, verdict.note) == (
        VerdictKind.TRUE_POSITIVE,
        "ana",
        HOSTILE,
    )
    assert (verdict.rule_id, verdict.entity_id, verdict.merchant_id) == (RULE, "u-2", None)
    await index(site.url, [(Source.VERDICTS, raw)])  # as the indexer reads it back
    await page.reload()
    listed = page.locator("table.verdicts")
    await expect(listed).to_contain_text("true_positive")
    await expect(listed).to_contain_text(HOSTILE)  # text, never markup


async def test_a_viewer_sees_no_verdict_form_and_is_refused_a_verdict(
    site: Site, page: Page
) -> None:
    alert_id = f"al_{57:032x}"
    await log_in(page, site.base, user="vic")
    await expect(page).to_have_url(site.base + "/")
    await page.goto(f"{site.base}/alerts/{alert_id}")
    await expect(page.locator("form.verdict")).to_have_count(0)
    token = await page.locator("input[name=csrf_token]").first.input_value()
    form = {"csrf_token": token, "verdict": "true_positive", "form_token": "t"}
    refused = await page.request.post(f"{site.base}/alerts/{alert_id}/verdict", form=form)
    assert refused.status == 403
    assert await published_verdicts(site.settings, alert_id) == []


async def test_an_entity_page_shows_its_alerts_freezes_and_list_entries(
    site: Site, page: Page
) -> None:
    mine = Snooze(ListEntityType.MERCHANT, "m-59", RULE, T0 + DAY, meta("c-snooze-59"))
    other = Snooze(ListEntityType.MERCHANT, "m-590", None, T0 + DAY, meta("c-snooze-590"))
    controls = [list_entry("c-allow-59", "m-59")]
    controls += [(s.key().encode(), dumps(s.to_wire())) for s in (mine, other)]
    rows = [
        row
        for offset, (key, value) in enumerate(controls)
        for row in index_record(Source.CONTROL, Position("risk-control", 0, offset), key, value)
    ]
    conn = await psycopg.AsyncConnection.connect(site.url)
    async with conn, conn.transaction():
        await write_rows(conn, rows)
    await log_in(page, site.base)
    await expect(page).to_have_url(site.base + "/")
    await page.goto(f"{site.base}/alerts/al_{59:032x}")
    await page.click("a.entity")
    await expect(page.locator("h1")).to_contain_text("user u-1")
    alerts = page.locator("table.alerts tr.alert-row")
    await expect(alerts.first).to_contain_text(f"al_{59:032x}")
    await expect(alerts).to_have_count(34)  # the 30 odd alerts, and the even ones n % 7 == 1
    await expect(page.locator("table.controls")).to_contain_text("On no list")
    await page.goto(f"{site.base}/entities/merchant/m-59")
    await expect(page.locator("table.freezes")).to_contain_text("5000 EUR")
    controls = page.locator("table.controls")
    await expect(controls).to_contain_text("list:allow:merchant:m-59")
    await expect(controls).to_contain_text("standing")
    await expect(controls).to_contain_text(f"snooze:merchant:{RULE}:m-59")
    await expect(controls.locator("tbody tr")).to_have_count(2)  # not m-590's snooze
    missing = await page.request.get(f"{site.base}/entities/planet/x")
    assert missing.status == 404


def counted_order(i: int, user: str, merchant: str) -> SourceRecord:
    value = {
        "event_id": f"ce{i}",
        "occurred_at": format_rfc3339_ms(T0 + i * MINUTE),
        "order_id": f"co{i}",
        "user_id": user,
        "merchant_id": merchant,
        "amount_minor": 1200 + i,
        "currency": "EUR",
    }
    return SourceRecord("orders", 0, i, user.encode(), orjson.dumps(value), 0)


async def test_an_entity_page_shows_the_counters_the_workers_hold(site: Site, page: Page) -> None:
    """Three orders through the workers' pipeline on the real Redis: the
    user's page reads its counters through the store, the merchant's page
    its health snapshot."""
    store = open_store(site.settings)
    await store.start()
    try:
        pipeline = Pipeline(site.settings, store, load_rulebook(site.settings))
        orders = [counted_order(i, "u-counted", "m-counted") for i in range(3)]
        await process(pipeline, Topic.ORDERS, orders, T0 + DAY)
    finally:
        await store.close()
    await log_in(page, site.base)
    await expect(page).to_have_url(site.base + "/")
    await page.goto(f"{site.base}/entities/user/u-counted")
    row = page.locator("table.counters tr", has_text=RULE).first
    await expect(row).to_contain_text("count of events in orders over 10m")
    await expect(row.locator("td").nth(1)).to_have_text("3")
    await page.goto(f"{site.base}/entities/user/u-never-seen")
    await expect(page.locator("table.counters tr", has_text=RULE).first).to_contain_text("—")
    await page.goto(f"{site.base}/entities/merchant/m-counted")
    await expect(page.locator("p.health")).to_contain_text("/1000")


async def test_the_freezes_and_audit_pages_list_what_stands_and_what_was_done(
    site: Site, page: Page
) -> None:
    await log_in(page, site.base)
    await expect(page).to_have_url(site.base + "/")
    await page.click("nav >> text=Freezes")
    freezes = page.locator("table.freezes")
    await expect(freezes).to_contain_text(f"al_{59:032x}")
    await expect(freezes).to_contain_text("5000 EUR")
    await page.goto(site.base + "/freezes?kind=benefit&order=age")
    await expect(freezes).to_contain_text("No freezes.")
    bad = await page.request.get(site.base + "/freezes?order=" + HOSTILE)
    assert bad.status == 400
    await page.click("nav >> text=Audit log")
    await page.fill("form.filters input[name=actor]", "ana")
    await page.click("form.filters button[type=submit]")
    rows = page.locator("tr.audit-row")
    await expect(rows.first).to_contain_text("console.login")
    for text in await rows.all_inner_texts():
        assert "ana" in text
    await page.fill("form.filters input[name=actor]", HOSTILE)
    await page.click("form.filters button[type=submit]")
    await expect(page.locator("table.audit")).to_contain_text("No entries.")
    await expect(page.locator("form.filters input[name=actor]")).to_have_value(HOSTILE)


async def test_an_analyst_takes_a_case_and_judges_picked_alerts_from_the_queue(
    site: Site, page: Page
) -> None:
    await log_in(page, site.base)
    await expect(page).to_have_url(site.base + "/")
    row = page.locator("tr.alert-row", has_text=f"al_{48:032x}")
    await row.locator("button", has_text="assign to me").click()
    await expect(row.locator("td.status")).to_have_text("assigned (ana)")
    await expect(row.locator("button", has_text="unassign")).to_have_count(1)
    await page.goto(site.base + "/?assigned=me")
    await expect(page.locator("tr.alert-row")).to_have_count(1)
    await page.goto(site.base + "/")
    picked = [f"al_{n:032x}" for n in (50, 49)]
    for alert_id in picked:
        await page.check(f"input[type=checkbox][value='{alert_id}']")
    await page.fill("form.bulk input[name=note]", HOSTILE)
    await page.click("form.bulk button[value=false_positive]")
    await expect(page.locator(".notice")).to_contain_text("2 verdicts sent")
    for alert_id in picked:
        ((verdict, _),) = await published_verdicts(site.settings, alert_id)
        assert (verdict.verdict, verdict.note) == (VerdictKind.FALSE_POSITIVE, HOSTILE)
    await page.click("nav >> text=Rules")
    await expect(page.locator("tr.rule-row", has_text=RULE)).to_contain_text("enforce")
    await expect(page.locator("form.mode")).to_have_count(0)  # an analyst sets no mode


async def test_a_username_guessed_at_is_locked_out_even_for_the_right_password(
    site: Site, page: Page
) -> None:
    for _ in range(3):  # the site's limit
        await log_in(page, site.base, password="a wrong guess", user="lou")
        await expect(page.locator(".error")).to_have_text("Wrong username or password.")
    await page.goto(site.base + "/")
    await page.fill("input[name=username]", "lou")
    await page.fill("input[name=password]", PASSWORD)
    async with page.expect_response(lambda r: r.url.endswith("/login")) as answer:
        await page.click("button[type=submit]")
    assert (await answer.value).status == 429
    await expect(page.locator(".error")).to_contain_text("Too many failed logins")
    await log_in(page, site.base)  # another username is not affected
    await expect(page).to_have_url(site.base + "/")
    await page.goto(site.base + "/audit?actor=lou")
    await expect(page.locator("table")).to_contain_text("console.login_locked")
