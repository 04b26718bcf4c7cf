"""The console end to end, on everything real: a worker on Kafka and Redis
judges a burst of orders; the console's indexer brings its alert and freeze
into PostgreSQL; in Debian's chromium an analyst sees the alert, opens it
with the events it counted, marks it a true positive, releases the freeze
(the worker's release reaches the freeze topic, the audit log has the
analyst's reason) and allow-lists the user, after which the worker no
longer alerts on it while it still alerts on another user. A viewer is
refused every action.

`--screenshots DIR` also saves the queue, the alert and the entity page
(scripts/screenshots regenerates docs/console/ with it)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from playwright.async_api import Browser, Page, expect

from console.app import Console
from console.settings import ConsoleSettings
from detectors.timestamps import format_rfc3339_ms
from stream import kafka_io
from stream.settings import Settings
from tests.integration.console_site import browser_page, console_database, served, users_yaml
from tests.integration.services import (
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    order_json,
    wait_ready,
)
from tests.integration.test_control import metric

pytestmark = pytest.mark.integration

PASSWORD = "a long analyst password"
RULE = "user_order_burst"
RULES = f"""\
ruleset: console-e2e
ruleset_version: "1"
rules:
  - id: {RULE}
    version: 1
    description: Five orders of one user in ten minutes freeze the user's vouchers.
    triggers: [orders]
    entity: user
    metric: {{kind: count, topics: [orders], window: 10m}}
    compare: ">="
    threshold: 5
    severity: high
    cooldown: 1m
    action: {{type: benefit_freeze, scope: vouchers, duration: 2d}}
"""
MIN = 60_000
WAIT_S = 60.0


@dataclass
class Stack:
    base: str
    browser: Browser
    settings: Settings
    worker: WorkerProcess
    shots: Path | None


@pytest.fixture(scope="module")
async def stack(
    postgres_port: int,
    services: Services,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("console-e2e")
    (tmp / "rules.yaml").write_text(RULES)
    settings = services.settings(rules_file=tmp / "rules.yaml")
    await create_topics(settings)
    worker = WorkerProcess(settings, tmp / "worker.log")
    worker.start()
    url = console_database(postgres_port, "e2e")
    (tmp / "users.yaml").write_text(users_yaml(PASSWORD, {"ana": "analyst", "vic": "viewer"}))
    port = free_port()
    group = f"console-e2e-{uuid.uuid4().hex[:8]}"
    console_settings = ConsoleSettings(
        database_url=url, users_file=tmp / "users.yaml", web_port=port, group_id=group
    )
    console = Console(settings, console_settings)
    indexer = asyncio.create_task(console.indexer.run())
    shots = request.config.getoption("--screenshots")
    try:
        await asyncio.to_thread(wait_ready, worker)
        async with served(console, port) as browser:
            yield Stack(
                f"http://127.0.0.1:{port}", browser, settings, worker, shots and Path(shots)
            )
    finally:
        indexer.cancel()
        await asyncio.gather(indexer, return_exceptions=True)
        worker.stop()


@pytest.fixture
async def page(stack: Stack) -> AsyncIterator[Page]:
    async with browser_page(stack.browser) as (page, _):
        page.set_default_timeout(WAIT_S * 1000)
        yield page


async def log_in(page: Page, base: str, user: str) -> None:
    await page.goto(base + "/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("form.login button[type=submit]")
    await expect(page).to_have_url(base + "/")


async def burst(settings: Settings, user: str, start_ms: int, prefix: str) -> list[str]:
    """Six orders of `user` a minute apart: the fifth crosses the threshold."""
    ids = [f"{prefix}-{i}" for i in range(6)]
    values = [
        (user.encode(), order_json(eid, user, format_rfc3339_ms(start_ms + i * MIN), f"m-{i}"))
        for i, eid in enumerate(ids)
    ]
    await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, values)
    return ids


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"not within {WAIT_S}s: {what}")


async def records(settings: Settings, topic: str) -> list[dict[str, object]]:
    found = await kafka_io.read_from(settings.kafka_bootstrap, topic)
    return [orjson.loads(r.value) for r in found if r.value]


async def shown(page: Page, url: str, selector: str, text: str) -> None:
    """Reload `url` until `selector` shows `text`: what the indexer has
    not read yet is not on the page."""

    async def there() -> bool:
        await page.goto(url)
        return text in " ".join(await page.locator(selector).all_inner_texts())

    await until(there, f"{text!r} in {selector} of {url}")


async def snap(stack: Stack, page: Page, name: str) -> None:
    if stack.shots is not None:
        stack.shots.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=stack.shots / f"{name}.png", full_page=True)


async def test_a_burst_judged_released_and_allow_listed_through_the_console(
    stack: Stack, page: Page
) -> None:
    s, base = stack.settings, stack.base
    start = int(time.time() * 1000) - 60 * MIN
    ids = await burst(s, "u-burst", start, "b1")
    for n in (1, 2):  # more of the same, for a queue worth a screenshot
        await burst(s, f"u-ring-{n}", start + n * MIN, f"r{n}")
    await log_in(page, base, "ana")

    # The worker's alerts, indexed, are on the queue; one's page lists what it counted.
    await shown(page, f"{base}/", "table.alerts", "u-ring-2")
    await shown(page, f"{base}/?rule={RULE}", "table.alerts", "u-burst")
    await snap(stack, page, "queue")
    row = page.locator("table.alerts tr.alert-row", has_text="u-burst").first
    await row.locator("a[href^='/alerts/']").first.click()
    counted = page.locator("ol.counted li")
    assert [t.split()[0] for t in await counted.all_inner_texts()] == ids[:5]
    await expect(counted.nth(4)).to_contain_text("(trigger)")
    await snap(stack, page, "alert")
    alert_url = page.url

    # A true positive, published and indexed back.
    await page.fill("form.verdict input[name=note]", "bot burst, confirmed")
    await page.click("form.verdict button[value=true_positive]")
    await shown(page, alert_url, "table.verdicts", "true_positive")

    # The freeze the alert raised, released with a reason: the worker
    # publishes the release on the freeze topic, the audit log has it.
    await shown(page, f"{base}/freezes?kind=benefit", "table.freezes", "u-burst")
    freeze_row = page.locator("table.freezes tr", has_text="u-burst").first
    await freeze_row.locator("summary").click()
    await freeze_row.locator("select[name=release_type]").select_option("false_positive")
    await freeze_row.locator("input[name=reason_code]").fill("kyc_ok")
    await freeze_row.locator("input[name=reason]").fill("customer verified by phone")
    await freeze_row.locator("button[type=submit]").click()

    async def released() -> bool:
        found = await records(s, s.topics.benefit_freezes)
        frozen = [r for r in found if r.get("action") == "freeze"]
        return any(
            r.get("action") == "release" and r.get("releases_freeze_id") == frozen[0]["freeze_id"]
            for r in found
        )

    await until(released, "the worker's release on the benefit freeze topic")
    await shown(page, f"{base}/audit?actor=ana", "table", "customer verified by phone")

    # Allow-listed, the user no longer alerts; another user still does.
    await page.goto(f"{base}/lists")
    adding = page.locator("form.add-entry")
    await adding.locator("select[name=list]").select_option("allow")
    await adding.locator("select[name=entity_type]").select_option("user")
    await adding.locator("input[name=entity_id]").fill("u-burst")
    await adding.locator("input[name=reason]").fill("staff test account")
    await adding.locator("button").click()

    async def followed() -> bool:
        return (metric(stack.worker, 'fraud_control_records{kind="list-entry"}') or 0) >= 1

    await until(followed, "the worker's snapshot holding the allow-list entry")
    later = start + 30 * MIN
    await burst(s, "u-burst", later, "b2")
    await burst(s, "u-other", later, "o1")

    async def alerts_for(user: str) -> list[dict[str, object]]:
        return [a for a in await records(s, s.topics.alerts) if a.get("entity_id") == user]

    async def other_alerted() -> bool:
        return bool(await alerts_for("u-other"))

    await until(other_alerted, "the other user's alert")
    assert len(await alerts_for("u-burst")) == 1  # the first burst's, none since

    await page.goto(f"{base}/entities/user/u-burst")
    await expect(page.locator("table.controls")).to_contain_text("list:allow:user:u-burst")
    released = page.locator("table.freezes tr", has_text="released").first
    await expect(released).to_contain_text("by ana (false positive, kyc_ok")
    await snap(stack, page, "entity")


async def test_a_viewer_is_refused_every_action(stack: Stack, page: Page) -> None:
    base = stack.base
    await log_in(page, base, "vic")
    token = await page.locator("form.logout input[name=csrf_token]").get_attribute("value")
    form = {"csrf_token": token or "", "form_token": "t", "reason": "r", "note": "n"}
    for path in (
        "/alerts/al_x/verdict",
        "/freezes/fz_x/release",
        "/lists/entries",
        f"/rules/{RULE}/mode",
    ):
        refused = await page.request.post(base + path, form=form)
        assert refused.status == 403, path
