"""The console's settings: `FRAUD_CONSOLE_*` variables, built once at the
entry point beside the worker's `stream.settings.Settings` (Kafka, topics and
logging come from there). The database URL is a secret: it may carry a
password, so `redacted()` and `__repr__` mask it and a parse error never
echoes it."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from console.two_person import ReleaseThresholds
from detectors.errors import ConfigError
from stream.settings import PREFIX, mask_url

__all__ = ["CONSOLE_ENV_NAMES", "ConsoleSettings", "console_from_env", "console_to_env"]

_STEM = "CONSOLE_"
_SECRETS = frozenset({"DATABASE_URL"})
DAY_S = 86_400
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True, slots=True)
class ConsoleSettings:
    # The local services' Postgres (`python -m devenv up`): loopback only, no
    # password, like their Redis. Anywhere else, a URL with credentials.
    database_url: str = field(
        default="postgresql://fraudstream@127.0.0.1:5432/fraudstream", repr=False
    )
    # Rows older than this are purged (alerts by event time, the rest by when
    # they were issued); the current state of a control key is always kept.
    retention_days: int = 90
    purge_every_s: float = 3600.0
    # The indexer's consumer group: its committed offsets are what it indexed.
    group_id: str = "fraudstream-console"
    web_host: str = "127.0.0.1"
    web_port: int = 6070
    # Who may log in to the pages (console/users.py); None: the pages are
    # off and only /livez, /readyz and /metrics answer.
    users_file: Path | None = None
    # A session ends this long after its login, whatever happens in it.
    session_ttl_s: float = 8 * 3600.0
    # The session cookie's Secure flag; None: set unless the console listens
    # on a loopback address (plain HTTP that never leaves the machine).
    cookie_secure: bool | None = None
    # Per currency, the largest fund freeze (integer minor units) one analyst
    # may release alone ("EUR:50000,USD:50000"); above it, in a currency not
    # named, or without a value, a release waits for a second person
    # (console/two_person.py). Unset: every fund release needs two persons.
    two_person_release: ReleaseThresholds = field(default_factory=ReleaseThresholds)
    # After this many failed logins of one username within the lockout
    # window, its logins are refused (429) until the window has passed
    # (console/login_throttle.py).
    login_max_failures: int = 10
    login_lockout_s: float = 900.0

    @property
    def retention_s(self) -> int:
        return self.retention_days * DAY_S

    def database_port(self) -> int:
        return urlsplit(self.database_url).port or 5432

    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/") or "postgres"

    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.web_host not in LOOPBACK

    def redacted(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["database_url"] = mask_url(self.database_url)
        return out

    def __repr__(self) -> str:
        return f"ConsoleSettings({self.redacted()!r})"

    def replace(self, **changes: Any) -> ConsoleSettings:
        return dataclasses.replace(self, **changes)


def _name(field_name: str) -> str:
    return f"{PREFIX}{_STEM}{field_name.upper()}"


CONSOLE_ENV_NAMES: frozenset[str] = frozenset(
    _name(f.name) for f in dataclasses.fields(ConsoleSettings)
)
"""Every variable `console_from_env` reads (the documented settings table
and the deploy files are tested against it, with stream.settings.ENV_NAMES)."""


def _database_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
        raise ValueError("expected postgresql://[user[:password]@]host[:port]/database")
    return raw


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:  # also rejects nan
        raise ValueError("must be positive")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("expected true or false")
    return lowered in ("true", "1", "yes")


_PARSERS: dict[str, Any] = {
    "database_url": _database_url,
    "retention_days": _positive_int,
    "purge_every_s": _positive_float,
    "group_id": str,
    "web_host": str,
    "web_port": _positive_int,
    "users_file": Path,
    "session_ttl_s": _positive_float,
    "cookie_secure": _bool,
    "two_person_release": ReleaseThresholds.parse,
    "login_max_failures": _positive_int,
    "login_lockout_s": _positive_float,
}


def console_from_env(env: Mapping[str, str]) -> ConsoleSettings:
    """Build ConsoleSettings from a mapping (`os.environ` at the entry point)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ConsoleSettings):
        raw = env.get(_name(f.name))
        if raw is None or raw == "":
            continue
        try:
            values[f.name] = _PARSERS[f.name](raw)
        except (ValueError, TypeError) as exc:
            shown = "(secret)" if f.name.upper() in _SECRETS else repr(raw)
            raise ConfigError(_name(f.name), f"cannot parse {shown}: {exc}") from None
    return ConsoleSettings(**values)


def console_to_env(settings: ConsoleSettings) -> dict[str, str]:
    """The variables that rebuild `settings` (for a console subprocess).
    Contains the database URL: hand it to a child process, never print it."""
    return {_name(f.name): _format(getattr(settings, f.name)) for f in dataclasses.fields(settings)}


def _format(value: Any) -> str:
    if value is None:
        return ""  # unset: console_from_env takes the default
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)  # ReleaseThresholds: its setting's own form
