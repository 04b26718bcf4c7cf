"""Schema migrations with yoyo-migrations: plain SQL files in
`console/schema/` (`NNNN_name.sql`, its undo in `NNNN_name.rollback.sql`),
applied in order under yoyo's lock, each in its own transaction, and
recorded in the database, so running them again applies nothing and two
consoles starting at once do not race."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from yoyo import get_backend, read_migrations

__all__ = ["MIGRATIONS", "applied_migrations", "migrate", "yoyo_url"]

MIGRATIONS = Path(__file__).resolve().parent / "schema"


def yoyo_url(database_url: str) -> str:
    """The same database for yoyo, through psycopg 3 (its plain
    `postgresql://` scheme means psycopg2)."""
    return urlunsplit(urlsplit(database_url)._replace(scheme="postgresql+psycopg"))


def migrate(database_url: str) -> list[str]:
    """Apply the migrations not yet applied; their ids, in order."""
    backend = get_backend(yoyo_url(database_url))
    try:
        migrations = read_migrations(str(MIGRATIONS))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()


def applied_migrations(database_url: str) -> list[str]:
    """The ids of the migrations the database has."""
    backend = get_backend(yoyo_url(database_url))
    try:
        migrations = read_migrations(str(MIGRATIONS))
        return [m.id for m in migrations if backend.is_applied(m)]
    finally:
        backend.connection.close()
