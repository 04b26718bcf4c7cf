"""Per-rule precision from analysts' verdicts, for the console's /metrics:
the verdict that stands on each alert (the
latest by decision time) counted per rule. True positives over true and
false positives; an `unsure` counts neither way
(stream.verdict_scoring.VerdictScore, as `fraudstream score --verdicts`).

Computed at each scrape from the verdicts table (verdicts are human-made:
thousands, not millions), served by `verdicts_by_rule`. A database that
does not answer leaves the gauges as they were.
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from stream.verdict_scoring import VerdictScore

__all__ = ["standing_verdicts"]

_STANDING = """
SELECT rule_id,
       count(*) FILTER (WHERE verdict = 'true_positive'),
       count(*) FILTER (WHERE verdict = 'false_positive'),
       count(*) FILTER (WHERE verdict = 'unsure')
FROM (SELECT DISTINCT ON (alert_id) alert_id, rule_id, verdict FROM verdicts
      ORDER BY alert_id, decided_at DESC, verdict_id DESC) standing
GROUP BY rule_id"""


async def standing_verdicts(conn: AsyncConnection[Any]) -> list[VerdictScore]:
    async with conn.cursor() as cur:
        await cur.execute(_STANDING)
        return [VerdictScore(str(r), int(t), int(f), int(u)) for r, t, f, u in await cur.fetchall()]
