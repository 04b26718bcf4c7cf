"""The console's users (console.users): argon2id hashing and verification,
the users file and what it refuses, roles and their order, and the
`fraudstream console hash-password` command."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from console.cli import cmd_hash_password, main
from console.users import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    Role,
    hash_password,
    load_users,
    parse_users,
    verify_password,
)
from detectors.errors import ConfigError

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def hashed() -> str:
    return hash_password(PASSWORD)


def test_a_hash_verifies_its_password_and_no_other(hashed: str) -> None:
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed
    assert verify_password(hashed, PASSWORD)
    assert not verify_password(hashed, PASSWORD + " ")
    assert not verify_password(hashed, "")
    assert not verify_password("not a hash", PASSWORD)
    assert hash_password(PASSWORD) != hashed  # salted


def test_a_short_or_huge_password_is_refused(hashed: str) -> None:
    with pytest.raises(ValueError, match=str(MIN_PASSWORD_CHARS)):
        hash_password("x" * (MIN_PASSWORD_CHARS - 1))
    with pytest.raises(ValueError, match=str(MAX_PASSWORD_CHARS)):
        hash_password("x" * (MAX_PASSWORD_CHARS + 1))
    users = parse_users(
        {"users": [{"username": "ana", "role": "viewer", "password_hash": hashed}]}, "f"
    )
    assert users.authenticate("ana", PASSWORD + "x" * MAX_PASSWORD_CHARS) is None


def test_the_users_file_reads_yaml_and_json(tmp_path: Path, hashed: str) -> None:
    entry = {"username": "ana", "role": "analyst", "password_hash": hashed}
    (tmp_path / "users.json").write_text(json.dumps({"users": [entry]}))
    (tmp_path / "users.yaml").write_text(
        f"users:\n  - username: ana\n    role: analyst\n    password_hash: '{hashed}'\n"
    )
    for name in ("users.json", "users.yaml"):
        users = load_users(tmp_path / name)
        ana = users.get("ana")
        assert ana is not None and ana.role is Role.ANALYST
        assert users.authenticate("ana", PASSWORD) == ana
        assert users.authenticate("ana", "wrong password!") is None
        assert users.authenticate("bob", PASSWORD) is None
        assert hashed not in repr(ana)


def test_every_problem_of_the_file_is_named_and_no_hash_echoed(hashed: str) -> None:
    doc = {
        "users": [
            {"username": "Ana Smith", "role": "analyst", "password_hash": hashed},
            {"username": "bob", "role": "root", "password_hash": hashed},
            {"username": "cy", "role": "viewer", "password_hash": "plain-text-password"},
            {"username": "dee", "role": "viewer", "password_hash": hashed, "pw": "x"},
            {"username": "eve", "role": "viewer", "password_hash": hashed},
            {"username": "eve", "role": "admin", "password_hash": hashed},
        ]
    }
    with pytest.raises(ConfigError) as info:
        parse_users(doc, "users.yaml")
    message = str(info.value)
    assert info.value.setting == "FRAUD_CONSOLE_USERS_FILE"
    for where in ("users[0]: username", "users[1]: role", "users[2]: password_hash"):
        assert where in message
    assert "users[3]: unknown field(s) ['pw']" in message
    assert "users[5]: username 'eve' appears twice" in message
    assert hashed not in message and "plain-text-password" not in message


@pytest.mark.parametrize("doc", [None, [], {"users": []}, {"people": []}, "users"])
def test_a_file_without_users_is_refused(doc: object) -> None:
    with pytest.raises(ConfigError, match="expected `users:`"):
        parse_users(doc, "users.yaml")


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_users(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("users: [unclosed")
    with pytest.raises(ConfigError, match="neither YAML nor JSON"):
        load_users(tmp_path / "bad.yaml")


def test_each_role_allows_what_the_ones_before_it_allow() -> None:
    assert [r.value for r in Role] == ["viewer", "analyst", "approver", "admin"]
    assert Role.ADMIN.allows(Role.APPROVER) and Role.APPROVER.allows(Role.ANALYST)
    assert Role.ANALYST.allows(Role.VIEWER) and Role.VIEWER.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.ANALYST)
    assert not Role.ANALYST.allows(Role.APPROVER)
    assert not Role.APPROVER.allows(Role.ADMIN)


def test_hash_password_reads_stdin_and_prints_only_the_hash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cmd_hash_password(io.StringIO(PASSWORD + "\n")) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("$argon2id$") and PASSWORD not in out
    assert verify_password(out, PASSWORD)
    assert cmd_hash_password(io.StringIO("short\n")) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "at least" in captured.err


def test_the_console_refuses_to_start_on_an_unusable_users_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before the migrations: no database is needed to find the mistake."""
    monkeypatch.setenv("FRAUD_CONSOLE_USERS_FILE", str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("FRAUD_CONSOLE_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    assert main(["console"]) == 2
    err = capsys.readouterr().err
    assert "configuration error: FRAUD_CONSOLE_USERS_FILE: cannot read" in err
