"""Who may use the console's pages: users and roles from a file the
operator keeps (`FRAUD_CONSOLE_USERS_FILE`, YAML or JSON), passwords as
argon2id hashes made by argon2-cffi (`fraudstream console hash-password`).

The file holds no password, only hashes, and it is read once at start: a
user removed or a role changed takes effect at the next start. The role of
a logged-in user is read from here on every request, never from the
session, so a restart with a smaller role narrows open sessions at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from detectors.errors import ConfigError

__all__ = [
    "MAX_PASSWORD_CHARS",
    "MIN_PASSWORD_CHARS",
    "Role",
    "User",
    "Users",
    "hash_password",
    "load_users",
    "parse_users",
    "verify_password",
]

SETTING = "FRAUD_CONSOLE_USERS_FILE"
MIN_PASSWORD_CHARS = 12
# Longer input is refused, never cut: a password is all of what was typed,
# and a login cannot make the server hash a megabyte.
MAX_PASSWORD_CHARS = 1024
USERNAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
_HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when the username is unknown, so a wrong name costs the
# same time as a wrong password and names cannot be told apart by timing.
_DUMMY_HASH = _HASHER.hash("not a password of anyone")


class Role(StrEnum):
    """Ordered: each role may do what the ones before it may."""

    VIEWER = "viewer"
    ANALYST = "analyst"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: Role
    password_hash: str

    def __repr__(self) -> str:
        return f"User({self.username!r}, {self.role.value})"  # never the hash


@dataclass(frozen=True, slots=True)
class Users:
    by_name: dict[str, User]

    def get(self, username: str) -> User | None:
        return self.by_name.get(username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password is theirs; None otherwise, in about
        the same time whether or not the username exists."""
        user = self.by_name.get(username)
        if len(password) > MAX_PASSWORD_CHARS:
            return None
        ok = verify_password(user.password_hash if user else _DUMMY_HASH, password)
        return user if ok and user is not None else None


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise ValueError(f"a password may have at most {MAX_PASSWORD_CHARS} characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def load_users(path: Path) -> Users:
    """Raises ConfigError naming every problem in the file (never a hash)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(SETTING, f"cannot read {path}: {exc}") from None
    try:
        doc = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise ConfigError(SETTING, f"{path} is neither YAML nor JSON: {exc}") from None
    return parse_users(doc, str(path))


def parse_users(doc: Any, source: str) -> Users:
    entries = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(SETTING, f"{source}: expected `users:` with a list of users")
    problems: list[str] = []
    users: dict[str, User] = {}
    for i, entry in enumerate(entries):
        user = _user(entry, f"users[{i}]", problems)
        if user is None:
            continue
        if user.username in users:
            problems.append(f"users[{i}]: username {user.username!r} appears twice")
        users[user.username] = user
    if problems:
        raise ConfigError(SETTING, f"{source}: " + "; ".join(problems))
    return Users(users)


def _user(entry: Any, where: str, problems: list[str]) -> User | None:
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected username, role and password_hash")
        return None
    unknown = sorted(set(entry) - {"username", "role", "password_hash"})
    if unknown:
        problems.append(f"{where}: unknown field(s) {unknown}")
    name, role, hashed = entry.get("username"), entry.get("role"), entry.get("password_hash")
    before = len(problems)
    if not isinstance(name, str) or not USERNAME.fullmatch(name):
        problems.append(f"{where}: username must match {USERNAME.pattern}")
    if role not in {r.value for r in Role}:
        problems.append(f"{where}: role must be one of {[r.value for r in Role]}")
    if not isinstance(hashed, str) or not hashed.startswith("$argon2id$"):
        problems.append(
            f"{where}: password_hash must be an argon2id hash "
            "(make one with `fraudstream console hash-password`)"
        )
    if len(problems) > before or unknown:
        return None
    assert isinstance(name, str) and isinstance(hashed, str) and isinstance(role, str)
    return User(name, Role(role), hashed)
