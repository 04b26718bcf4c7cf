"""The rules page's reads from the index, each served by an index of the
schema:

- the standing rule-mode record of each rule: the newest `rule-mode`
  control record of each key (`control_records_by_kind`, then the few
  rule-mode rows there are);
- the latest published ruleset: the newest record of key `ruleset`
  (`control_records_by_key`);
- each rule's alerts since a time: one count per rule id, each an index
  range of `alerts_by_rule` (rule_id, occurred_at DESC), so the page costs
  the same at 100k alerts as at 100.

A stored record is parsed again with the workers' own parser: what the
workers would refuse is not shown as in effect.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from detectors.control import ControlKind, ControlRecordError, RuleMode, Ruleset
from detectors.control_parsing import parse_control

__all__ = ["fires_since", "published_ruleset", "standing_rule_modes"]

log = logging.getLogger(__name__)

_MODES = """
SELECT DISTINCT ON (record_key) record_key, body::text FROM control_records
WHERE kind = %s ORDER BY record_key, kafka_offset DESC"""

_RULESET = """
SELECT record_key, body::text FROM control_records WHERE record_key = %s
ORDER BY kafka_offset DESC LIMIT 1"""

_FIRES = """
SELECT r.rule_id, (SELECT count(*) FROM alerts a WHERE a.rule_id = r.rule_id
                   AND a.occurred_at >= %s)
FROM unnest(%s::text[]) AS r (rule_id)"""


def _parsed(key: str, body: str) -> Any:
    try:
        return parse_control(key, body)
    except ControlRecordError as exc:
        log.warning("console: the indexed control record %r is not usable (%s)", key, exc)
        return None


async def standing_rule_modes(conn: AsyncConnection[Any]) -> dict[str, RuleMode]:
    async with conn.cursor() as cur:
        await cur.execute(_MODES, (ControlKind.RULE_MODE.value,))
        rows = await cur.fetchall()
    records = [_parsed(str(key), str(body)) for key, body in rows]
    return {r.rule_id: r for r in records if isinstance(r, RuleMode)}


async def published_ruleset(conn: AsyncConnection[Any]) -> Ruleset | None:
    async with conn.cursor() as cur:
        await cur.execute(_RULESET, (ControlKind.RULESET.value,))
        row = await cur.fetchone()
    record = _parsed(str(row[0]), str(row[1])) if row else None
    return record if isinstance(record, Ruleset) else None


async def fires_since(
    conn: AsyncConnection[Any], rule_ids: list[str], since: datetime
) -> dict[str, int]:
    async with conn.cursor() as cur:
        await cur.execute(_FIRES, (since, rule_ids))
        return {str(rule): int(n) for rule, n in await cur.fetchall()}
