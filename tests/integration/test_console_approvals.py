"""The console's actions in a real browser (Playwright driving Debian's
chromium) against the real console web app, a real PostgreSQL and a real
Kafka: a release with a reason, the two-person rule on a large fund
freeze, list entries added and removed, a rule set checked and kept for
approval, and what a viewer or hostile input gets. A published record is
read back from `risk-control` and indexed with the indexer's own code
(`console.mapping` + `console.index_store`), as the indexer would."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psycopg
import pytest
from aiokafka.errors import KafkaTimeoutError
from playwright.async_api import Browser, Page, expect
from yoyo import get_backend, read_migrations

from console.app import Console
from console.migrations import MIGRATIONS, applied_migrations, migrate, yoyo_url
from console.rows import Source
from console.settings import ConsoleSettings
from console.two_person import ReleaseThresholds
from detectors.control import ControlRecord, ListEntry, Release, Ruleset
from detectors.control_parsing import parse_control
from detectors.rules import ActionKind
from stream import kafka_io
from stream.rules_loading import read_rules_text
from stream.settings import Settings
from stream.topics import create_all_topics
from tests.console_records import dumps, freeze
from tests.integration.console_site import (
    browser_page,
    console_database,
    index_records,
    served,
    users_yaml,
)
from tests.integration.services import Services, free_port

PASSWORD = "a long analyst password"
HOSTILE = "<script>alert('pwned')</script>x' OR '1'='1"
SMALL, LARGE, OTHER = f"fz_{2:032x}", f"fz_{3:032x}", f"fz_{4:032x}"


@dataclass
class Site:
    base: str
    url: str
    browser: Browser
    settings: Settings
    kafka_down: list[bool] = field(default_factory=lambda: [False])


@pytest.fixture(scope="module")
async def site(
    postgres_port: int, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    url = console_database(postgres_port, "actions")
    freezes = [
        freeze(2, ActionKind.FUND_FREEZE, amount=5000),  # under the EUR limit
        freeze(3, ActionKind.FUND_FREEZE, amount=90000),  # over it: two persons
        freeze(4, ActionKind.FUND_FREEZE, amount=100),
    ]
    await index_records(url, [(Source.FUND_FREEZES, None, dumps(f.to_wire())) for f in freezes])
    users = tmp_path_factory.mktemp("console") / "users.yaml"
    roles = {"ana": "analyst", "amy": "approver", "root": "admin", "vic": "viewer"}
    users.write_text(users_yaml(PASSWORD, roles))
    port = free_port()
    settings = services.settings()
    await create_all_topics(settings)
    limits = ReleaseThresholds.parse("EUR:50000")
    console_settings = ConsoleSettings(
        database_url=url, users_file=users, web_port=port, two_person_release=limits
    )
    console = Console(settings, console_settings)
    down = [False]

    async def publish(record: ControlRecord) -> None:
        if down[0]:
            raise KafkaTimeoutError()  # what the publisher raises when Kafka does not answer
        await console.publisher.control(record)

    assert console.pages is not None
    console.pages = dataclasses.replace(console.pages, publish_control=publish)
    async with served(console, port) as browser:
        yield Site(f"http://127.0.0.1:{port}", url, browser, settings, down)


@pytest.fixture
async def page(site: Site) -> AsyncIterator[Page]:
    async with browser_page(site.browser) as (page, _):
        yield page


async def log_in(page: Page, base: str, user: str) -> None:
    await page.goto(base + "/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form.login button[type=submit]")  # not the header's logout
    await expect(page).to_have_url(base + "/")


async def control_records(site: Site, key: str) -> list[tuple[ControlRecord, bytes]]:
    found = await kafka_io.read_from(site.settings.kafka_bootstrap, site.settings.topics.control)
    return [(parse_control(r.key, r.value), r.value) for r in found if r.key == key.encode()]


async def index_control(site: Site, key: str) -> None:
    """What the indexer does with the key's records on `risk-control`."""
    records = await control_records(site, key)
    await index_records(site.url, [(Source.CONTROL, key.encode(), raw) for _, raw in records])


async def release_in_page(page: Page, freeze_id: str, reason: str) -> None:
    row = page.locator(f"#freeze-{freeze_id}")
    await row.locator("summary").click()
    await row.locator("select[name=release_type]").select_option("appeal_upheld")
    await row.locator("input[name=reason_code]").fill("kyc_ok")
    await row.locator("input[name=reason]").fill(reason)
    await row.locator("button[type=submit]").click()


async def csrf(page: Page) -> str:
    return await page.locator("input[name=csrf_token]").first.input_value()


async def test_a_release_with_a_reason_lands_on_risk_control_and_in_the_audit_log(
    site: Site, page: Page
) -> None:
    await log_in(page, site.base, "ana")
    await page.goto(site.base + "/freezes?kind=fund")
    site.kafka_down[0] = True
    await release_in_page(page, SMALL, HOSTILE)
    await expect(page.locator(".error")).to_contain_text("Kafka did not answer")
    site.kafka_down[0] = False
    assert await control_records(site, f"release:{SMALL}") == []
    await page.go_back()
    await release_in_page(page, SMALL, HOSTILE)
    await expect(page.locator(".notice")).to_contain_text(SMALL)
    ((record, _),) = await control_records(site, f"release:{SMALL}")
    assert isinstance(record, Release)
    assert (record.meta.actor, record.meta.reason, record.reason_code) == ("ana", HOSTILE, "kyc_ok")
    await index_control(site, f"release:{SMALL}")
    await page.goto(f"{site.base}/audit?target_id=release:{SMALL}")
    audit = page.locator("tr.audit-row")
    await expect(audit).to_have_count(1)
    await expect(audit).to_contain_text("control.release")
    await expect(audit).to_contain_text("ana")
    await expect(audit).to_contain_text(HOSTILE)  # text, never markup


async def test_a_large_fund_release_waits_for_a_second_approver(site: Site, page: Page) -> None:
    await log_in(page, site.base, "amy")
    await page.goto(site.base + "/freezes?kind=fund")
    await expect(page.locator(f"#freeze-{LARGE} summary")).to_contain_text("two persons")
    await release_in_page(page, LARGE, "merchant sent its KYC documents")
    await expect(page.locator(".notice")).to_contain_text("second person")
    pending = page.locator("table.pending tr.request-row")
    await expect(pending).to_have_count(1)
    await expect(pending).to_contain_text("90000 EUR")
    await expect(pending).to_contain_text("your own request")
    request_id = (await pending.get_attribute("id") or "").removeprefix("request-")
    own = await page.request.post(
        f"{site.base}/approvals/{request_id}/approve", form={"csrf_token": await csrf(page)}
    )
    assert own.status == 403 and "second person" in await own.text()
    await page.goto(site.base + "/freezes?kind=fund")
    await release_in_page(page, LARGE, "asked again")  # a new form: a second request
    await expect(page.locator(".error")).to_contain_text("waits for a second person already")
    assert await control_records(site, f"release:{LARGE}") == []

    await log_in(page, site.base, "root")
    await page.goto(site.base + "/approvals")
    await page.locator(f"#request-{request_id} form.approve button").click()
    await expect(page.locator(".notice")).to_contain_text("approved")
    await expect(page.locator("table.decided")).to_contain_text("root")
    ((record, _),) = await control_records(site, f"release:{LARGE}")
    assert isinstance(record, Release) and record.meta.control_id == request_id
    again = await page.request.post(
        f"{site.base}/approvals/{request_id}/approve", form={"csrf_token": await csrf(page)}
    )
    assert again.status == 409  # decided once
    await page.goto(f"{site.base}/audit?target_id=release:{LARGE}")
    actions = await page.locator("tr.audit-row").all_inner_texts()
    assert any("approval.request" in a and "amy" in a for a in actions)
    assert any("approval.approve" in a and "root" in a for a in actions)


async def test_a_viewer_cannot_act_and_hostile_input_is_refused_clearly(
    site: Site, page: Page
) -> None:
    await log_in(page, site.base, "vic")
    await page.goto(site.base + "/freezes?kind=fund")
    await expect(page.locator("form.release")).to_have_count(0)
    token = await csrf(page)
    form = {"csrf_token": token, "form_token": "t", "reason": "r", "release_type": "manual"}
    for path in (f"/freezes/{OTHER}/release", "/lists/entries", "/approvals/x/approve"):
        refused = await page.request.post(site.base + path, form={**form, "reason_code": "x"})
        assert refused.status == 403, path
    assert await control_records(site, f"release:{OTHER}") == []

    await log_in(page, site.base, "ana")
    form["csrf_token"] = await csrf(page)
    huge = await page.request.post(
        f"{site.base}/freezes/{OTHER}/release", form={**form, "reason": "x" * 1_000_000}
    )
    assert huge.status in (400, 413)
    bad_code = await page.request.post(
        f"{site.base}/freezes/{OTHER}/release", form={**form, "reason_code": HOSTILE}
    )
    assert bad_code.status == 400 and "<script>" not in await bad_code.text()
    assert await control_records(site, f"release:{OTHER}") == []
    for path in ("/lists/entries", "/lists/snoozes"):
        fields = {"action": "add", "entity_type": "user", "entity_id": "u-1", "until": "2h"}
        huge = await page.request.post(
            site.base + path, form={**form, **fields, "reason": "x" * 1_000_000}
        )
        assert huge.status in (400, 413), path
    bad_filter = await page.request.get(site.base + "/lists?list=" + HOSTILE.replace("'", "%27"))
    assert bad_filter.status == 400


async def test_a_list_entry_added_and_removed_through_the_page_is_on_risk_control(
    site: Site, page: Page
) -> None:
    entity = f"m-{HOSTILE}"
    key = f"list:allow:merchant:{entity}"
    await log_in(page, site.base, "ana")
    await page.click("nav >> text=Lists")
    adding = page.locator("form.add-entry")
    await adding.locator("select[name=list]").select_option("allow")
    await adding.locator("select[name=entity_type]").select_option("merchant")
    await adding.locator("input[name=entity_id]").fill(entity)
    await adding.locator("input[name=expires]").fill("7d")
    await adding.locator("input[name=reason]").fill("known good merchant")
    await adding.locator("button").click()
    await expect(page.locator(".notice")).to_contain_text("add")
    ((added, _),) = await control_records(site, key)
    assert isinstance(added, ListEntry) and not added.removed and added.expires_at_ms
    await index_control(site, key)
    await page.goto(f"{site.base}/lists?entity_type=merchant&list=allow")
    row = page.locator("tr.control-row")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text(entity)  # text, never markup
    await row.locator("input[name=reason]").fill("contract ended")
    await row.locator("button").click()
    await expect(page.locator(".notice")).to_contain_text("remove")
    records = [r for r, _ in await control_records(site, key)]
    assert [isinstance(r, ListEntry) and r.removed for r in records] == [False, True]
    await index_control(site, key)
    await page.goto(f"{site.base}/lists?entity_type=merchant")
    await expect(page.locator("tr.control-row")).to_have_count(0)
    await page.goto(f"{site.base}/lists?entity_type=merchant&all=1")
    await expect(page.locator("tr.control-row")).to_contain_text("removed")


async def test_a_rule_set_is_checked_then_kept_for_a_second_approver(
    site: Site, page: Page
) -> None:
    await log_in(page, site.base, "amy")
    await page.goto(site.base + "/rulesets/new")
    await page.fill("textarea[name=rules_yaml]", "rules:\n  - rule_id: " + HOSTILE + "\n")
    await page.fill("input[name=reason]", "tighter velocity")
    await page.click("form.ruleset button[type=submit]")
    await expect(page.locator("ul.validation li").first).to_be_visible()
    await expect(page.locator("textarea[name=rules_yaml]")).to_have_value(
        re.compile(re.escape(HOSTILE))
    )
    form = {"csrf_token": await csrf(page), "form_token": "t", "reason": "r"}
    huge = await page.request.post(
        site.base + "/rulesets/new", multipart={**form, "rules_yaml": "x" * 1_000_000}
    )
    assert huge.status in (400, 413) and "x" * 1000 not in await huge.text()
    huge = await page.request.post(
        site.base + "/approvals/x/reject", form={**form, "reason": "x" * 1_000_000}
    )
    assert huge.status in (400, 413)
    text, _ = read_rules_text(Settings())
    await page.fill("textarea[name=rules_yaml]", "")
    await page.set_input_files(
        "input[name=rules_file]",
        files=[{"name": "rules.yaml", "mimeType": "text/yaml", "buffer": text.encode()}],
    )
    await page.click("form.ruleset button[type=submit]")
    await expect(page.locator(".notice")).to_contain_text("second person")
    pending = page.locator("table.pending tr.request-row", has_text="ruleset")
    await expect(pending).to_have_count(1)
    await expect(pending).to_contain_text("your own request")
    request_id = (await pending.get_attribute("id") or "").removeprefix("request-")
    assert await control_records(site, "ruleset") == []

    await log_in(page, site.base, "root")
    await page.goto(site.base + "/approvals")
    await page.locator(f"#request-{request_id} form.approve button").click()
    await expect(page.locator(".notice")).to_contain_text("approved")
    ((record, _),) = await control_records(site, "ruleset")
    assert isinstance(record, Ruleset) and record.rules_yaml == text
    assert (record.meta.actor, record.meta.reason) == ("amy", "tighter velocity")


def test_the_approvals_migration_rolls_back_and_applies_again(postgres_port: int) -> None:
    url = console_database(postgres_port, "approvals")
    backend = get_backend(yoyo_url(url))
    try:
        mine = read_migrations(str(MIGRATIONS)).filter(lambda m: m.id == "0004_approvals")
        with backend.lock():
            backend.rollback_migrations(backend.to_rollback(mine))
    finally:
        backend.connection.close()
    assert "0004_approvals" not in applied_migrations(url)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('approval_requests')").fetchone() == (None,)
    assert migrate(url) == ["0004_approvals"]
