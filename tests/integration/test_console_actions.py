"""The console's rules page, case assignment and bulk verdicts over real
HTTP against a real console web app, real PostgreSQL and a real Kafka; and
hostile input into every form and filter of every route the app's router
has (so a form added later is covered without editing this test).

What the console publishes is read back from Kafka and indexed with the
indexer's own code (`console.mapping` + `console.index_store`), as the
console's indexer would."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from aiohttp import web
from psycopg import sql

from console.app import Console
from console.bulk_verdicts import BULK_CAP
from console.rows import Source
from console.settings import ConsoleSettings
from detectors.control import RuleMode, RuleModeSetting
from detectors.control_parsing import parse_control
from detectors.rules import Severity
from detectors.rules_entities import EntityType
from detectors.verdicts import Verdict, VerdictKind, parse_verdict, verdict_id_for
from stream import kafka_io
from stream.settings import Settings
from stream.topics import create_all_topics
from tests.console_records import alert, dumps
from tests.integration.console_client import Client, Logins, field
from tests.integration.console_site import console_database, index_records, users_yaml
from tests.integration.services import Services, free_port

PASSWORD = "a long analyst password"
RULE, OTHER_RULE = "user_order_velocity_10m", "device_order_velocity_1h"  # the built-in file's
HOUR = 3_600_000
SCRIPT = "<script>alert('pwned')</script>"
SQL = "x' OR '1'='1'; DROP TABLE alerts; --"
HOSTILE = SCRIPT + SQL
MARK = "Z9q" * 4  # what a 1 MB field is made of: found wherever it was kept
BIG = MARK * (1_000_000 // len(MARK))
CONSOLE = Path(__file__).resolve().parents[2] / "console"
NOW = int(time.time() * 1000)


def aid(n: int) -> str:
    return f"al_{n:032x}"


@dataclass
class Site:
    base: str
    url: str
    settings: Settings
    app: web.Application


def users_file(directory: Path, roles: dict[str, str]) -> Path:
    """The console's users file: each user with PASSWORD and a role."""
    path = directory / "users.yaml"
    path.write_text(users_yaml(PASSWORD, roles))
    return path


def records() -> list[tuple[Source, bytes | None, bytes]]:
    """Alerts 0..9 of RULE in the last hours, 10..11 of RULE two days ago,
    20..21 of OTHER_RULE in the last hour."""
    alerts = [alert(n, at_ms=NOW - (n + 1) * HOUR, rule=RULE) for n in range(10)]
    alerts += [alert(n, at_ms=NOW - 48 * HOUR - n, rule=RULE) for n in (10, 11)]
    alerts += [alert(n, at_ms=NOW - HOUR // 2, rule=OTHER_RULE) for n in (20, 21)]
    return [(Source.ALERTS, None, dumps(a.to_wire())) for a in alerts]


@pytest.fixture(scope="module")
async def site(
    postgres_port: int, services: Services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    users = users_file(
        tmp_path_factory.mktemp("console"),
        {"ana": "analyst", "bob": "analyst", "olga": "approver", "vic": "viewer"},
    )
    url = console_database(postgres_port, "actions")
    await index_records(url, records())
    port = free_port()
    settings = services.settings()
    await create_all_topics(settings)
    console = Console(settings, ConsoleSettings(database_url=url, users_file=users, web_port=port))
    app = console.web_app()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Site(f"http://127.0.0.1:{port}", url, settings, app)
    finally:
        await runner.cleanup()
        await console.publisher.stop()


@pytest.fixture
async def login(site: Site) -> AsyncIterator[Logins]:
    logins = Logins(site.base, PASSWORD)
    yield logins
    for c in logins.clients:
        await c.http.close()


@pytest.fixture
async def client(login: Logins) -> Client:
    return await login("ana")


async def topic(settings: Settings, name: str) -> list[tuple[bytes, bytes]]:
    found = await kafka_io.read_from(settings.kafka_bootstrap, name)
    return [(r.key, r.value) for r in found]


def rule_row(html: str, rule: str) -> str:
    rows = re.findall(r'<tr class="rule-row">(.*?)</tr>', html, re.S)
    (row,) = [r for r in rows if f"<code>{rule}</code>" in r]
    return str(row)


def verdict(n: int, kind: VerdictKind) -> bytes:
    return Verdict(
        verdict_id=verdict_id_for(f"test:{n}"),
        alert_id=aid(n),
        verdict=kind,
        rule_id=RULE,
        severity=Severity.HIGH,
        entity_type=EntityType.USER,
        entity_id="u-1",
        merchant_id=None,
        alert_occurred_at_ms=NOW - HOUR,
        actor="ana",
        decided_at_ms=NOW,
        note="",
    ).to_bytes()


async def test_the_rules_page_shows_each_rules_mode_fire_rate_and_precision(
    site: Site, client: Client, login: Logins
) -> None:
    judged = [(0, VerdictKind.TRUE_POSITIVE), (1, VerdictKind.FALSE_POSITIVE)]
    judged += [(2, VerdictKind.UNSURE), (3, VerdictKind.TRUE_POSITIVE)]
    await index_records(site.url, [(Source.VERDICTS, None, verdict(n, k)) for n, k in judged])
    viewer = await login("vic")
    html = await viewer.text("/rules")
    row = rule_row(html, RULE)
    assert '<td class="fires">10</td>' in row  # not the two of two days ago
    assert '<td class="precision">0.67</td>' in row  # 2 of 3: the unsure counts neither way
    assert "Orders per user in a sliding" in row
    assert '<td class="fires">2</td>' in rule_row(html, OTHER_RULE)
    assert 'action="/rules/' not in html  # a viewer has no mode form
    refused = await viewer.post(f"/rules/{RULE}/mode", {"mode": "off", "reason": "r"})
    assert refused.status == 403


async def test_an_approver_sets_a_mode_once_however_often_the_form_is_sent(
    site: Site, client: Client, login: Logins
) -> None:
    assert (await client.post(f"/rules/{RULE}/mode", {"mode": "off", "reason": "r"})).status == 403
    approver = await login("olga")
    token = field(await approver.text("/rules"), "form_token")
    form = {"mode": "off", "reason": "noisy since the release", "form_token": token}
    for _ in range(2):
        sent = await approver.post(f"/rules/{RULE}/mode", form)
        assert sent.status == 303 and sent.location == f"/rules?sent={RULE}"
    controls = await topic(site.settings, site.settings.topics.control)
    mine = [(k, v) for k, v in controls if k == f"rule-mode:{RULE}".encode()]
    records = [parse_control(k, v) for k, v in mine]
    assert len(records) == 2 and records[0].meta.control_id == records[1].meta.control_id
    record = records[0]
    assert isinstance(record, RuleMode) and record.mode is RuleModeSetting.OFF
    assert record.meta.actor == "olga" and record.meta.reason == form["reason"]
    audit_topic = await topic(site.settings, site.settings.topics.control_audit)
    assert len([k for k, _ in audit_topic if k == mine[0][0]]) == 2
    await index_records(site.url, [(Source.CONTROL, k, v) for k, v in mine])
    row = rule_row(await approver.text("/rules"), RULE)
    assert '<td class="mode off">off' in row and "set by olga" in row
    assert "control.rule-mode" in await approver.text("/audit?actor=olga")
    bad = await approver.post(f"/rules/{RULE}/mode", {**form, "reason": ""})
    assert bad.status == 400
    assert (await approver.post("/rules/no_such_rule/mode", form)).status == 404


async def test_an_analyst_takes_a_case_and_gives_it_back_each_change_audited(
    site: Site, client: Client, login: Logins
) -> None:
    target = aid(5)
    taken = await client.post(f"/alerts/{target}/assign", {"next": "/?assigned=me"})
    assert taken.status == 303 and taken.location == "/?assigned=me"
    mine = await client.text("/?assigned=me")
    assert target in mine and aid(4) not in mine and "unassign" in mine
    assert target not in await client.text("/?assigned=none")
    bob = await login("bob")
    assert (await bob.post(f"/alerts/{target}/assign", {})).status == 409
    assert (await bob.post(f"/alerts/{target}/unassign", {})).status == 403
    assert target not in await bob.text("/?assigned=me")
    again = await client.post(f"/alerts/{target}/assign", {})  # holds it already: no change
    assert again.status == 303
    assert (await client.post(f"/alerts/{target}/unassign", {})).status == 303
    assert target in await client.text("/?assigned=none")
    with psycopg.connect(site.url) as conn:
        case = conn.execute("SELECT status, assignee FROM alerts WHERE alert_id = %s", (target,))
        assert case.fetchone() == ("new", None)
        audit = conn.execute(
            "SELECT actor, action FROM audit_log WHERE target_id = %s ORDER BY audit_id",
            (target,),
        ).fetchall()
    assert audit == [("ana", "case.assign"), ("ana", "case.unassign")]
    assert (await client.post("/alerts/al_none/assign", {})).status == 404


async def test_a_bulk_verdict_publishes_one_verdict_per_alert_once(
    site: Site, client: Client, login: Logins
) -> None:
    html = await client.text("/")
    assert 'form="bulk"' in html
    token = field(html, "form_token")
    picked = [aid(6), aid(7), aid(8), "al_not_indexed"]
    form = {"alert_id": picked, "verdict": "false_positive", "note": SQL, "form_token": token}
    for _ in range(2):  # sent again: the same verdict ids
        sent = await client.post("/alerts/bulk-verdict", form)
        assert sent.status == 303 and sent.location == "/?bulk=3&missing=1"
    found = await topic(site.settings, site.settings.topics.verdicts)
    verdicts = [parse_verdict(v) for k, v in found if k.decode() in picked]
    assert sorted(v.alert_id for v in verdicts) == sorted(picked[:3] * 2)
    assert len({v.verdict_id for v in verdicts}) == 3
    assert {(v.verdict, v.note, v.actor) for v in verdicts} == {
        (VerdictKind.FALSE_POSITIVE, SQL, "ana")
    }
    too_many = {**form, "alert_id": [aid(n) for n in range(BULK_CAP + 1)], "form_token": "t2"}
    assert (await client.post("/alerts/bulk-verdict", too_many)).status == 400
    viewer = await login("vic")
    assert (await viewer.post("/alerts/bulk-verdict", {**form, "form_token": "t3"})).status == 403
    after = await topic(site.settings, site.settings.topics.verdicts)
    assert len(after) == len(found)


# --- hostile input into every form and filter ---------------------------------------------

# Field names the console reads: the templates' form fields and what the
# handlers read from a query or a form (so new ones are found by name).
_READS = re.compile(r"""(?:query|form)\.(?:get|getall)\(\s*["'](\w+)["']""")
_FIELDS = re.compile(r'name="(\w+)"')
# Values that let a form get past its first check, so the hostile field is
# the one the handler must deal with (an unknown name gets none).
VALID = {
    "verdict": "unsure",
    "mode": "shadow",
    "reason": "hostile input test",
    "note": "n",
    "form_token": "hostile-test",
    "username": "olga",
    "password": PASSWORD,
    "alert_id": aid(9),
}
SESSION_PATHS = ("/login", "/logout")
# The audit page's filters, named by a loop in its template.
AUDIT_FILTERS = {"actor", "action", "target_type", "target_id"}
REAL_PATH_VALUES = {"alert_id": aid(9), "rule_id": OTHER_RULE, "entity_type": "user"}


def field_names() -> list[str]:
    names = set()
    for path in (CONSOLE / "templates").glob("*.html"):
        names |= set(_FIELDS.findall(path.read_text()))
    for path in CONSOLE.glob("*.py"):
        names |= set(_READS.findall(path.read_text()))
    return sorted((names | AUDIT_FILTERS) - {"csrf_token"})


def paths(resource: web.AbstractResource) -> list[str]:
    """The route's path with its parameters hostile, and with real values."""
    info = resource.get_info()
    if "path" in info:
        return [str(info["path"])]
    formatter = str(info["formatter"])
    params = re.findall(r"\{(\w+)\}", formatter)
    hostile = formatter.format(**dict.fromkeys(params, quote(HOSTILE, safe="")))
    real = formatter.format(**{p: REAL_PATH_VALUES.get(p, "x") for p in params})
    return [hostile, real]


def routes(app: web.Application) -> list[tuple[str, list[str]]]:
    out = []
    for route in app.router.routes():
        resource = route.resource
        if route.method == "HEAD" or resource is None or isinstance(resource, web.StaticResource):
            continue
        if resource.canonical == "/readyz":  # 503 is its answer here: no indexer runs
            continue
        out.append((route.method, paths(resource)))
    # Logging out and in last: they change the session the others use.
    return sorted(out, key=lambda r: (r[1][0] in SESSION_PATHS, r[0], r[1]))


def check(status: int, body: str, location: str, where: str) -> None:
    assert status < 500, where
    assert SCRIPT not in body and "<script>alert" not in body, where
    assert "<" not in location, where


async def hostile_gets(c: Client, path: str, names: list[str]) -> int:
    sent = 0
    queries = [{n: HOSTILE} for n in names] + [dict.fromkeys(names, HOSTILE)]
    for query in queries:
        async with c.http.get(f"{c.base}{path}?{urlencode(query)}") as r:
            check(r.status, await r.text(), "", f"GET {path} {list(query)[:2]}")
        sent += 1
    async with c.http.get(f"{c.base}{path}?{urlencode({names[0]: BIG})}") as r:
        assert 400 <= r.status < 500, f"GET {path} with a 1 MB field: {r.status}"
        # aiohttp's own answer to a request line over 8190 bytes quotes its start.
        assert len(await r.text()) < 1000
    return sent + 1


def hostile_forms(path: str, names: list[str], big: bool) -> list[dict[str, object]]:
    """Each field hostile in turn (and 1 MB in turn), the others valid; a
    login or logout, which ends the session, all fields at once."""
    if path in SESSION_PATHS:
        return [{**VALID, **dict.fromkeys(names, HOSTILE)}] + [
            {**VALID, name: BIG} for name in ("username", "password")
        ]
    values = (HOSTILE, BIG) if big else (HOSTILE,)
    return [{**VALID, name: value} for name in names for value in values]


async def hostile_posts(c: Client, path: str, names: list[str], big: bool) -> int:
    forms = hostile_forms(path, names, big)
    for form in forms:
        if path == "/login":  # its CSRF token is the login form's cookie
            await c.http.get(c.base + "/login")
            c.csrf = c.login_csrf()
        r = await c.post(path, form)
        text = r.text
        where = f"POST {path} {[k for k, v in form.items() if v in (HOSTILE, BIG)][:2]}"
        check(r.status, text, r.location, where)
        assert MARK not in text, where
        if path in SESSION_PATHS:
            await c.log_in()
    return len(forms)


async def test_hostile_input_in_every_form_and_filter_is_inert_and_a_1mb_field_is_kept_nowhere(
    site: Site, login: Logins
) -> None:
    names = field_names()
    assert {"rule", "severity", "note", "reason", "mode", "alert_id", "assigned"} <= set(names)
    c = await login("olga")  # an approver: every form is allowed
    sent = 0
    for method, variants in routes(site.app):
        for n, path in enumerate(variants):
            if method == "GET":
                sent += await hostile_gets(c, path, names)
            else:
                sent += await hostile_posts(c, path, names, big=n == len(variants) - 1)
    assert sent > 300
    # A failed login's audit row keeps the first 64 characters of its
    # username (5 marks); a longer run would be the field itself.
    query = sql.SQL("SELECT count(*) FROM {} t WHERE t::text LIKE %s")
    with psycopg.connect(site.url) as conn:
        for table in ("alerts", "audit_log", "control_records", "verdicts", "console_sessions"):
            found = conn.execute(query.format(sql.Identifier(table)), (f"%{MARK * 6}%",)).fetchone()
            assert found == (0,), table
    for name in (site.settings.topics.verdicts, site.settings.topics.control):
        assert [k for k, v in await topic(site.settings, name) if MARK.encode() in v] == []
