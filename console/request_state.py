"""What `console.web_auth`'s middleware puts on a page request: its
database connection, its session and its user (None when logged out)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from psycopg import AsyncConnection

from console.sessions import Session
from console.users import User

__all__ = ["CONN", "SESSION", "USER"]

CONN = web.RequestKey[AsyncConnection[Any]]("conn")
SESSION = web.RequestKey[Session | None]("session")
USER = web.RequestKey[User | None]("user")
