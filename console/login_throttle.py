"""Failed logins per username, counted from the audit log: after
`login_max_failures` within `login_lockout_s`, the username's logins are
refused (429) before its password is even checked, so guessing cannot go
on and a right guess during the lockout tells nothing.

The audit log already holds every failed login (`console.login_failed`,
actor = the username tried), in an index by actor and time: counting there
needs no state of its own and holds across every console process sharing
the database. Guessing across many usernames from one address is left to
the reverse proxy in front of the console (docs/CONSOLE.md).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

__all__ = ["FAILED", "LOCKED", "locked_out"]

FAILED = "console.login_failed"
LOCKED = "console.login_locked"

_RECENT_FAILURES = """
SELECT count(*) FROM (
    SELECT 1 FROM audit_log
    WHERE actor = %s AND action = %s AND at > to_timestamp(%s / 1000.0)
    ORDER BY at DESC LIMIT %s
) recent"""


async def locked_out(
    conn: AsyncConnection[Any], username: str, now_ms: int, max_failures: int, window_s: float
) -> bool:
    """Whether `username` failed `max_failures` times in the last `window_s`."""
    since_ms = now_ms - int(window_s * 1000)
    async with conn.cursor() as cur:
        await cur.execute(_RECENT_FAILURES, (username, FAILED, since_ms, max_failures))
        row = await cur.fetchone()
    return row is not None and int(row[0]) >= max_failures
