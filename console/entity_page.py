"""An entity's page (`/entities/<type>/<id>`): its alerts, its freezes and
their state, and the control records that stand on it (list entries and
snoozes, the newest record of each key: what the workers are steered by).

Read-only, from the index like every page: the entity's alerts come from
`alerts_by_entity`, its freezes from `freezes_by_subject`; its control
records are found by their exact keys (list entries) or by kind and entity
type (snoozes, a few per entity type) and matched on the id here.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from console.entity_state import ENTITY_STATE
from console.queries import entity_alerts, entity_freezes
from console.render import render
from console.request_state import CONN
from console.users import Role
from console.web_auth import requires
from detectors.control import control_key, snooze_key
from detectors.list_names import ListEntityType, ListName
from detectors.rules_entities import EntityType

__all__ = ["add_entity_routes", "standing_controls"]

ROWS = 50


async def standing_controls(
    conn: AsyncConnection[Any], entity_type: str, entity_id: str
) -> list[dict[str, Any]]:
    """The newest control record of each list-entry and snooze key of the
    entity (none for an entity type the lists do not hold)."""
    try:
        listed = ListEntityType(entity_type)
    except ValueError:
        return []
    lists = [control_key("list", n.value, listed.value, entity_id) for n in ListName]
    snooze_suffix = ":" + snooze_key(listed, entity_id, None).rsplit(":", 1)[1]
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT DISTINCT ON (record_key) control_id, kind, record_key, actor, reason,"
            " issued_at, body FROM control_records"
            " WHERE record_key = ANY(%s) OR (kind = 'snooze' AND record_key LIKE %s)"
            " ORDER BY record_key, kafka_partition, kafka_offset DESC",
            (lists, f"snooze:{listed.value}:%"),
        )
        rows = await cur.fetchall()
    return [r for r in rows if r["kind"] != "snooze" or r["record_key"].endswith(snooze_suffix)]


@requires(Role.VIEWER)
async def entity(request: web.Request) -> web.StreamResponse:
    entity_type, entity_id = request.match_info["entity_type"], request.match_info["entity_id"]
    if entity_type not in [e.value for e in EntityType]:
        return render(request, "error.html", status=404, message="No such entity type.")
    conn = request[CONN]
    reader = request.app.get(ENTITY_STATE)
    state = await reader.read(EntityType(entity_type), entity_id) if reader else None
    return render(
        request,
        "entity.html",
        entity_type=entity_type,
        entity_id=entity_id,
        alerts=await entity_alerts(conn, entity_type, entity_id, "", ROWS),
        freezes=await entity_freezes(conn, entity_type, entity_id, ""),
        controls=await standing_controls(conn, entity_type, entity_id),
        state=state,
    )


def add_entity_routes(app: web.Application) -> None:
    app.router.add_get("/entities/{entity_type}/{entity_id:.+}", entity)
