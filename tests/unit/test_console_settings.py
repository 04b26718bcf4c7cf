"""The console's settings (console.settings) and its place in the
`fraudstream` command (console.cli)."""

from __future__ import annotations

import pytest

from console.cli import CONSOLE, main
from console.migrations import MIGRATIONS, yoyo_url
from console.settings import (
    CONSOLE_ENV_NAMES,
    ConsoleSettings,
    console_from_env,
    console_to_env,
)
from detectors.errors import ConfigError
from stream.cli import build_parser

SECRET_URL = "postgresql://console:s3cr3t-pw@db.internal:6543/risk"


def test_defaults_point_at_the_local_services_postgres() -> None:
    s = console_from_env({})
    assert s == ConsoleSettings()
    assert (s.database_port(), s.database_name()) == (5432, "fraudstream")
    assert s.retention_days == 90 and s.retention_s == 90 * 86_400


def test_values_are_parsed_and_round_trip_through_the_environment() -> None:
    env = {
        "FRAUD_CONSOLE_DATABASE_URL": SECRET_URL,
        "FRAUD_CONSOLE_RETENTION_DAYS": "30",
        "FRAUD_CONSOLE_WEB_PORT": "7070",
        "FRAUD_CONSOLE_GROUP_ID": "console-b",
    }
    s = console_from_env(env)
    assert (s.database_port(), s.database_name(), s.retention_days) == (6543, "risk", 30)
    assert console_from_env(console_to_env(s)) == s
    assert set(console_to_env(s)) == CONSOLE_ENV_NAMES


def test_the_database_password_is_never_printed() -> None:
    s = console_from_env({"FRAUD_CONSOLE_DATABASE_URL": SECRET_URL})
    assert "s3cr3t-pw" not in repr(s) and "s3cr3t-pw" not in str(s.redacted())
    assert s.redacted()["database_url"] == "postgresql://***@db.internal:6543/risk"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FRAUD_CONSOLE_DATABASE_URL", "mysql://u:s3cr3t-pw@h/db"),
        ("FRAUD_CONSOLE_DATABASE_URL", "s3cr3t-pw"),
        ("FRAUD_CONSOLE_RETENTION_DAYS", "0"),
        ("FRAUD_CONSOLE_PURGE_EVERY_S", "nan"),
        ("FRAUD_CONSOLE_WEB_PORT", "http"),
    ],
)
def test_bad_values_name_the_variable_and_never_echo_the_url(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        console_from_env({name: value})
    assert info.value.setting == name
    assert name != "FRAUD_CONSOLE_DATABASE_URL" or "s3cr3t-pw" not in str(info.value)


def test_migrations_use_psycopg_3_and_ship_with_the_package() -> None:
    assert yoyo_url(SECRET_URL) == "postgresql+psycopg://console:s3cr3t-pw@db.internal:6543/risk"
    names = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    assert names[:2] == ["0001_initial.rollback.sql", "0001_initial.sql"]


def test_the_fraudstream_command_has_the_console_and_keeps_every_other_subcommand(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser({"console": CONSOLE})
    assert parser.parse_args(["console", "--migrate-only"]).migrate_only is True
    assert build_parser().parse_args(["worker"]).command == "worker"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "console" in out and "worker" in out and "control" in out
