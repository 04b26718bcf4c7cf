"""`fraudstream control`: the record each command builds (publishing is
tested against Kafka in tests/integration/test_control.py)."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace
from typing import Any

import pytest

from detectors.control import (
    ControlRecordError,
    ListEntry,
    Provenance,
    Release,
    RuleMode,
    RuleModeSetting,
    Snooze,
)
from detectors.control_parsing import parse_control
from detectors.errors import ConfigError
from detectors.release_types import ReleaseType
from stream import control_cli
from stream.cli import build_parser
from stream.control_cli import build_record, encode, parse_until
from stream.settings import from_env

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


SECRET = "kafka-s3cret"


def test_commands_reach_kafka_with_the_workers_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Publishing, `show` and `log` pass the settings' SASL/SSL credentials to
    every client they open, and print none of them."""
    from stream import kafka_io

    settings = from_env(
        {
            "FRAUD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "FRAUD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "FRAUD_KAFKA_SASL_USERNAME": "ops",
            "FRAUD_KAFKA_SASL_PASSWORD": SECRET,
        }
    )
    calls: list[tuple[str, str, dict[str, Any]]] = []
    published: list[Any] = []

    async def produce(bootstrap: str, topic: str, records: Any, **kw: Any) -> None:
        calls.append(("produce", topic, kw["client_options"]))
        published.extend(SimpleNamespace(offset=len(published), key=k, value=v) for k, v in records)

    async def read_from(bootstrap: str, topic: str, **kw: Any) -> list[Any]:
        calls.append(("read", topic, kw["client_options"]))
        return published[: len(published) // 2] if topic == settings.topics.control else []

    monkeypatch.setattr(kafka_io, "produce", produce)
    monkeypatch.setattr(kafka_io, "read_from", read_from)
    out = io.StringIO()
    assert control_cli.run(settings, args("kill-switch", "on", "--reason", "drill"), out) == 0
    assert control_cli.run(settings, args("show"), out) == 0
    assert control_cli.run(settings, args("log"), out) == 0
    topics = settings.topics
    assert [(c[0], c[1]) for c in calls] == [
        ("produce", topics.control),
        ("produce", topics.control_audit),
        ("read", topics.control),
        ("read", topics.control_audit),
    ]
    expected = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ops",
        "sasl_plain_password": SECRET,
    }
    assert all(c[2] == expected for c in calls)
    assert "kill switch ON" in out.getvalue()
    assert SECRET not in out.getvalue() + "".join(capsys.readouterr())


def test_release_builds_a_release_record_the_workers_accept() -> None:
    freeze_id = "fz_" + "ab" * 16
    argv = ("release", freeze_id, "--type", "false_positive", "--code", "rule_bug", "--reason", "x")
    record = build_record(args(*argv), META)
    assert record == Release(freeze_id, ReleaseType.FALSE_POSITIVE, "rule_bug", META)
    assert parse_control(record.key(), encode(record)) == record
    with pytest.raises(SystemExit):  # the workers' own type is not offered
        args("release", freeze_id, "--type", "expired", "--code", "c", "--reason", "x")
    bad = build_record(
        args("release", "fz_1", "--type", "manual", "--code", "c", "--reason", "x"), META
    )
    with pytest.raises(ControlRecordError, match="freeze_id"):
        parse_control(bad.key(), encode(bad))
