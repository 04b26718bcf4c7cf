"""Lists and snoozes (`/lists`): the list entries and snoozes that stand
(each key's newest control record, as the workers fold them), filtered by
list, entity type and entity; and forms that add or remove a list entry
and add or end a snooze (analyst and above), each a control record on
`risk-control` (console.action_forms builds it, the workers' parser checks
it). The page shows a record once the indexer has read it back.

An entity's own records come from `console.entity_page.standing_controls`
(the entity page's query); the whole list from one query over the list and
snooze kinds (index control_records_by_kind), at most PAGE_ROWS keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from console.action_forms import (
    FormError,
    list_entry_record,
    provenance,
    snooze_record,
)
from console.action_pages import acting_user, bad_form, now_ms, publish_or_503, read_form
from console.entity_page import standing_controls
from console.render import render
from console.request_state import CONN, USER
from console.sessions import new_token
from console.users import Role
from console.web_auth import requires, see_other
from detectors.control import (
    MAX_ID,
    ControlKind,
    ControlRecord,
    ControlRecordError,
    ListEntry,
    Snooze,
)
from detectors.control_parsing import parse_control
from detectors.list_names import ListEntityType, ListName

__all__ = ["ListFilter", "add_list_routes", "parse_list_filter", "standing"]

PAGE_ROWS = 200
_KINDS = [ControlKind.LIST_ENTRY.value, ControlKind.SNOOZE.value]


@dataclass(frozen=True, slots=True)
class ListFilter:
    list_name: str = ""
    entity_type: str = ""
    entity_id: str = ""
    everything: bool = False  # also removed and expired records

    def patterns(self) -> list[str]:
        """LIKE patterns of the keys (built from enum values only)."""
        kind = self.entity_type or "%"
        if self.list_name:
            return [f"list:{self.list_name}:{kind}:%"]
        return [f"list:%:{kind}:%", f"snooze:{kind}:%"]


def parse_list_filter(query: Mapping[str, str]) -> ListFilter:
    """FormError for a list or entity type that does not exist, or an id
    longer than any the contract allows."""
    name, entity_type = query.get("list", ""), query.get("entity_type", "")
    entity_id = query.get("entity_id", "").strip()
    if name and name not in [n.value for n in ListName]:
        raise FormError(f"list: one of {', '.join(n.value for n in ListName)}")
    if entity_type and entity_type not in [t.value for t in ListEntityType]:
        raise FormError(f"entity_type: one of {', '.join(t.value for t in ListEntityType)}")
    if len(entity_id) > MAX_ID:
        raise FormError(f"entity_id: at most {MAX_ID} characters")
    if entity_id and not entity_type:
        raise FormError("entity_id: choose its entity type too")
    return ListFilter(name, entity_type, entity_id, query.get("all") == "1")


async def _newest(conn: AsyncConnection[Any], f: ListFilter) -> list[dict[str, Any]]:
    if f.entity_id:
        rows = await standing_controls(conn, f.entity_type, f.entity_id)
        return [
            r for r in rows if not f.list_name or r["record_key"].startswith(f"list:{f.list_name}:")
        ]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT DISTINCT ON (record_key) control_id, kind, record_key, actor, reason,"
            " issued_at, body FROM control_records"
            " WHERE kind = ANY(%s) AND record_key LIKE ANY(%s)"
            # A key lives in one partition (the topic is keyed), so its
            # newest record is its highest offset: control_records_by_key's order.
            " ORDER BY record_key, kafka_offset DESC LIMIT %s",
            (_KINDS, f.patterns(), PAGE_ROWS),
        )
        return list(await cur.fetchall())


def _record(row: Mapping[str, Any]) -> ControlRecord | None:
    try:
        return parse_control(None, row["body"])
    except ControlRecordError:
        return None  # indexed, so it parsed once; a newer contract's record is shown as is


def standing(rows: list[dict[str, Any]], at_ms: int, everything: bool) -> list[dict[str, Any]]:
    """Each row with whether it stands at `at_ms` (the record's own
    `active`); the ones that do not (removed, expired) only when
    `everything` is asked for."""
    out = []
    for row in rows:
        record = _record(row)
        stands = isinstance(record, ListEntry | Snooze) and record.active(at_ms)
        if stands or everything:
            out.append({**row, "standing": stands})
    return out


@requires(Role.VIEWER)
async def lists(request: web.Request) -> web.StreamResponse:
    try:
        f = parse_list_filter(request.query)
    except FormError as exc:
        return bad_form(request, str(exc))
    user = request[USER]
    return render(
        request,
        "lists.html",
        entries=standing(await _newest(request[CONN], f), now_ms(), f.everything),
        filter=f,
        lists=[n.value for n in ListName],
        entity_types=[t.value for t in ListEntityType],
        can_act=user is not None and user.role.allows(Role.ANALYST),
        form_token=new_token(),
        sent=request.query.get("sent", ""),
        limit=PAGE_ROWS,
    )


async def _act(request: web.Request, kinds: tuple[str, str]) -> web.StreamResponse:
    """`kinds`: the form's two actions (add, remove / add, end)."""
    user = acting_user(request)
    form = await read_form(request)
    action = form.get("action")
    if action not in kinds:
        return bad_form(request, f"action: {' or '.join(kinds)}")
    try:
        meta = provenance(form, user.username, f"{request.path}:{action}", now_ms())
        if kinds[1] == "remove":
            record: ControlRecord = list_entry_record(form, meta, removed=action == "remove")
        else:
            record = snooze_record(form, meta, end=action == "end")
    except FormError as exc:
        return bad_form(request, str(exc))
    failed = await publish_or_503(request, record)
    return failed or see_other(f"/lists?sent={action}")


@requires(Role.ANALYST)
async def post_entry(request: web.Request) -> web.StreamResponse:
    return await _act(request, ("add", "remove"))


@requires(Role.ANALYST)
async def post_snooze(request: web.Request) -> web.StreamResponse:
    return await _act(request, ("add", "end"))


def add_list_routes(app: web.Application) -> None:
    app.router.add_get("/lists", lists)
    app.router.add_post("/lists/entries", post_entry)
    app.router.add_post("/lists/snoozes", post_snooze)
