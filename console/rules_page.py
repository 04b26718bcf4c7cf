"""The rules page (`/rules`): every rule in effect with its description,
mode, version, the ruleset version, its fire rate over the last 24 hours
and its precision from the standing verdicts (console.rules_view says how
each is derived); and the form that sets a rule's mode (approver role),
published as a `rule-mode` control record on `risk-control`, never written
here: the page shows the new mode once the indexer has read the record
back (with its audit entry, as for any control record).

The form carries a token of its own, made when the page is rendered: the
record's `control_id` (its idempotency key) is derived from it, so a form
sent twice is one record, published twice with the same id.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from aiohttp import web
from aiokafka.errors import KafkaError

from console.action_forms import FormError, checked
from console.render import render
from console.request_state import CONN, USER
from console.rules_queries import fires_since, published_ruleset, standing_rule_modes
from console.rules_view import FIRE_WINDOW_MS, rule_views
from console.sessions import new_token
from console.users import Role
from console.verdict_stats import standing_verdicts
from console.web_auth import PAGES, requires, see_other
from detectors.control import (
    MAX_REASON,
    Provenance,
    RuleMode,
    RuleModeSetting,
    Ruleset,
)
from detectors.rulebook import Rulebook
from detectors.rules import Rule

__all__ = ["RulesInEffect", "add_rules_routes", "control_id_for", "in_effect"]

log = logging.getLogger(__name__)


def control_id_for(idempotency_key: str) -> str:
    """The control id of an operator's form: the same key, the same id."""
    return "cs_" + hashlib.blake2b(idempotency_key.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class RulesInEffect:
    rules: tuple[Rule, ...]
    ruleset_version: str
    published: Ruleset | None  # None: the workers run their rules file


def in_effect(published: Ruleset | None, book: Rulebook | None) -> RulesInEffect:
    if published is not None:
        return RulesInEffect(published.rulebook.rules, published.ruleset_version, published)
    if book is not None:
        return RulesInEffect(book.rules, book.digest, None)
    return RulesInEffect((), "", None)


def _rule_in(rule_id: str, effect: RulesInEffect) -> str:
    """The rule the mode form's redirect names, if it is one in effect."""
    return rule_id if rule_id in {r.rule_id for r in effect.rules} else ""


@requires(Role.VIEWER)
async def rules_page(request: web.Request) -> web.StreamResponse:
    conn = request[CONN]
    effect = in_effect(await published_ruleset(conn), request.app[PAGES].rulebook)
    since = datetime.now(UTC) - timedelta(milliseconds=FIRE_WINDOW_MS)
    fires = await fires_since(conn, [r.rule_id for r in effect.rules], since)
    views = rule_views(
        effect.rules, await standing_rule_modes(conn), fires, await standing_verdicts(conn)
    )
    user = request[USER]
    return render(
        request,
        "rules.html",
        rules=views,
        effect=effect,
        settings=[m.value for m in RuleModeSetting],
        can_set=user is not None and user.role.allows(Role.APPROVER),
        form_token=new_token(),
        sent=_rule_in(request.query.get("sent", ""), effect),
        max_reason=MAX_REASON,
    )


def _mode_record(request: web.Request, rule_id: str, form: dict[str, str]) -> RuleMode | str:
    """The record the form asks for, or why there is none."""
    mode, reason, token = form.get("mode", ""), form.get("reason", ""), form.get("form_token", "")
    if mode not in [m.value for m in RuleModeSetting]:
        return "Choose a mode: " + ", ".join(m.value for m in RuleModeSetting) + "."
    if not reason.strip() or len(reason) > MAX_REASON:
        return f"A reason is required (at most {MAX_REASON} characters)."
    if not token:
        return "Reload the page and retry."
    user = request[USER]
    assert user is not None  # `requires` let the request through
    key = f"console:{user.username}:rule-mode:{rule_id}:{token}"
    meta = Provenance(control_id_for(key), user.username, reason, int(time.time() * 1000))
    record = RuleMode(rule_id, RuleModeSetting(mode), meta)
    try:  # the workers' own parser is the check: what it would refuse is never sent
        checked(record)
    except FormError as exc:
        return f"The record would be refused: {exc}."
    return record


@requires(Role.APPROVER)
async def set_mode(request: web.Request) -> web.StreamResponse:
    rule_id = request.match_info["rule_id"]
    pages = request.app[PAGES]
    effect = in_effect(await published_ruleset(request[CONN]), pages.rulebook)
    if not _rule_in(rule_id, effect):
        return render(request, "error.html", status=404, message="No such rule in effect.")
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    record = _mode_record(request, rule_id, form)
    if isinstance(record, str):
        return render(request, "error.html", status=400, message=record)
    try:
        await pages.publish_control(record)
    except (KafkaError, TimeoutError) as exc:
        message = f"The mode was not set ({type(exc).__name__}); send it again."
        return render(request, "error.html", status=503, message=message)
    return see_other("/rules?sent=" + quote(rule_id, safe=""))


def add_rules_routes(app: web.Application) -> None:
    app.router.add_get("/rules", rules_page)
    app.router.add_post("/rules/{rule_id}/mode", set_mode)
