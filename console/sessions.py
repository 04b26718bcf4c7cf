"""Login sessions, kept server-side in Postgres (`console_sessions`).

Why server-side rather than a signed cookie: logout and expiry end a
session for good (a copied cookie is worth nothing once its row is gone),
every console replica sees the same sessions, no signing key has to be
configured and rotated, and the cookie carries nothing but a random
token. The table holds the token's SHA-256, never the token, so reading
the database opens no session. Each session has its own CSRF token
(the synchronizer-token pattern): every POST must echo it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from console.index_store import timestamp

__all__ = [
    "Session",
    "create_session",
    "end_session",
    "find_session",
    "new_token",
    "same_token",
    "token_digest",
]

TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    csrf_token: str
    digest: str  # the token's SHA-256: the row's key, and safe to log or audit


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time: a guess learns nothing from how long the check took."""
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())


async def create_session(
    conn: AsyncConnection[Any], username: str, now_ms: int, ttl_s: float
) -> tuple[str, Session]:
    """A new session (the cookie's token, and the session); expired ones go."""
    token, csrf = new_token(), new_token()
    digest = token_digest(token)
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM console_sessions WHERE expires_at < %s", (timestamp(now_ms),)
        )
        await conn.execute(
            "INSERT INTO console_sessions (token_sha256, username, csrf_token, created_at,"
            " expires_at) VALUES (%s, %s, %s, %s, %s)",
            (digest, username, csrf, timestamp(now_ms), timestamp(now_ms + int(ttl_s * 1000))),
        )
    return token, Session(username, csrf, digest)


async def find_session(conn: AsyncConnection[Any], token: str, now_ms: int) -> Session | None:
    digest = token_digest(token)
    cur = await conn.execute(
        "SELECT username, csrf_token FROM console_sessions"
        " WHERE token_sha256 = %s AND expires_at > %s",
        (digest, timestamp(now_ms)),
    )
    row = await cur.fetchone()
    return None if row is None else Session(row[0], row[1], digest)


async def end_session(conn: AsyncConnection[Any], digest: str) -> None:
    await conn.execute("DELETE FROM console_sessions WHERE token_sha256 = %s", (digest,))
