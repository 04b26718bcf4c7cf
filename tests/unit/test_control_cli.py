"""`fraudstream control`: the record each command builds (publishing is
tested against Kafka in tests/integration/test_control.py)."""

from __future__ import annotations

import argparse

import pytest

from detectors.control import ListEntry, Provenance, RuleMode, RuleModeSetting, Snooze
from detectors.errors import ConfigError
from stream.cli import build_parser
from stream.control_cli import build_record, parse_until

NOW = 1_800_000_000_000
META = Provenance("c1", "alice", "why", NOW)


def args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["control", *argv])


def test_times_are_rfc3339_or_a_duration_from_now() -> None:
    assert parse_until("2h", NOW, "--until") == NOW + 7_200_000
    assert parse_until("2027-01-15T00:00:00Z", NOW, "--until") == 1_799_971_200_000
    with pytest.raises(ConfigError, match="--until"):
        parse_until("tomorrow", NOW, "--until")


def test_each_command_builds_its_record() -> None:
    mode = build_record(args("mode", "r1", "off", "--reason", "x"), META)
    assert mode == RuleMode("r1", RuleModeSetting.OFF, META)
    added = build_record(
        args("list", "add", "allow", "ip", "10.0.0.1", "--expires-at", "1d", "--reason", "x"),
        META,
    )
    assert isinstance(added, ListEntry) and not added.removed
    assert added.expires_at_ms == NOW + 86_400_000 and added.key() == "list:allow:ip:10.0.0.1"
    removed = build_record(args("list", "remove", "allow", "ip", "10.0.0.1", "--reason", "x"), META)
    assert isinstance(removed, ListEntry) and removed.removed and removed.key() == added.key()
    snooze = build_record(args("snooze", "device", "d1", "--until", "30m", "--reason", "x"), META)
    assert snooze == Snooze(snooze.entity_type, "d1", None, NOW + 1_800_000, META)


def test_a_changing_command_needs_a_reason() -> None:
    with pytest.raises(SystemExit):
        args("kill-switch", "on")
    assert args("kill-switch", "on", "--reason", "r", "--actor", "bob").actor == "bob"
