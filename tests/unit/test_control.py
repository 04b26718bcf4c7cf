"""The control contract: the strict parser, and the JSON Schema agreeing with it."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from detectors.control import (
    MAX_SNOOZE_MS,
    ControlRecordError,
    KillSwitch,
    ListEntry,
    Release,
    RuleMode,
    Snooze,
    Switch,
    control_key,
)
from detectors.control_parsing import parse_control
from detectors.release_types import ReleaseType
from detectors.rulebook import parse_rulebook
from detectors.timestamps import parse_rfc3339_ms
from tests.unit.test_ruleset_record import RULES

SCHEMA = Path(__file__).resolve().parents[2] / "contract" / "schemas" / "risk-control.schema.json"
COMMON = {
    "schema_version": 1,
    "control_id": "ctl-1",
    "actor": "alice",
    "reason": "incident 42",
    "issued_at": "2026-11-02T12:00:00.000Z",
}
FREEZE_ID = "fz_" + "0123456789abcdef" * 2
FREEZE_KEY = f"release:{FREEZE_ID}"
VALID: dict[str, dict[str, Any]] = {
    "kill-switch": {**COMMON, "kind": "kill-switch", "state": "on"},
    "breaker": {**COMMON, "kind": "breaker", "state": "tripped"},
    "rule-mode:r1": {**COMMON, "kind": "rule-mode", "rule_id": "r1", "mode": "shadow"},
    "list:allow:merchant:m-1": {
        **COMMON,
        "kind": "list-entry",
        "list": "allow",
        "entity_type": "merchant",
        "entity_id": "m-1",
        "expires_at": None,
        "removed": False,
    },
    "snooze:user:*:u-1": {
        **COMMON,
        "kind": "snooze",
        "entity_type": "user",
        "entity_id": "u-1",
        "rule_id": None,
        "expires_at": "2026-11-03T12:00:00.000Z",
    },
    FREEZE_KEY: {
        **COMMON,
        "kind": "release",
        "freeze_id": FREEZE_ID,
        "release_type": "appeal_upheld",
        "reason_code": "kyc.verified-2",
    },
    "ruleset": {
        **COMMON,
        "kind": "ruleset",
        "ruleset_version": parse_rulebook(RULES).digest,
        "rules_yaml": RULES,
    },
}
BAD_VALUES: dict[str, list[Any]] = {
    "kind": [None, "kill_switch", "rule-set", 1],
    "schema_version": [None, 2, "1", 1.0, True],
    "control_id": [None, "", "x" * 129, 5, "a\nb"],
    "actor": [None, "", 7],
    "reason": [None, "", "x" * 513],
    "issued_at": [None, "2026-11-02 12:00:00", "yesterday", 0],
    "state": [None, "ON", True, "open"],
    "rule_id": ["*", "", 3],
    "mode": [None, "enforced", "OFF"],
    "list": [None, "deny"],
    "entity_type": [None, "voucher", "order", "USER"],
    "entity_id": [None, "", "x" * 129],
    "expires_at": ["never", 5, "2026-11-02"],
    "removed": [None, "false", 0],
    "freeze_id": [None, "", "fz_123", "FZ_" + "0" * 32, "fz_" + "A" * 32, "fz_" + "0" * 33],
    "release_type": [None, "expired", "MANUAL", "appeal"],
    "reason_code": [None, "", "Kyc", "9lives", "a b", "x" * 65, 3],
    "ruleset_version": [None, "", "0" * 63, "F" * 64, 5],
    "rules_yaml": [None, "", 7],
}


def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def corpus() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for key, base in VALID.items():
        out.append((key, base))
        out.append((key, {**base, "unknown": 1}))
        for name in base:
            out.append((key, {k: v for k, v in base.items() if k != name}))
            for value in BAD_VALUES.get(name, []):
                out.append((key, {**copy.deepcopy(base), name: value}))
    return out


def test_valid_records_parse_and_round_trip() -> None:
    for key, wire in VALID.items():
        record = parse_control(key, json.dumps(wire).encode())
        assert record.key() == key
        assert record.to_wire() == wire
        assert parse_control(key, record.to_wire()) == record


def test_schema_and_parser_accept_and_reject_the_same_records() -> None:
    v = validator()
    accepted = rejected = 0
    for key, wire in corpus():
        schema_ok = v.is_valid(wire)
        try:
            parse_control(key, wire)
            code_ok = True
        except ControlRecordError:
            code_ok = False
        assert schema_ok == code_ok, wire
        accepted += code_ok
        rejected += not code_ok
    assert accepted >= 8 and rejected > 60


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("kill-switch", b"\xff", "not JSON"),
        ("kill-switch", b"[1]", "a JSON object expected"),
        ("kill-switch", b'{"kind": "unfreeze"}', "kind: 'unfreeze' is not one of"),
        ("other", json.dumps(VALID["kill-switch"]), "key 'other' does not match"),
        ("rule-mode:r1", json.dumps({**VALID["rule-mode:r1"], "x": 1}), "unknown fields: x"),
        ("kill-switch", json.dumps({**VALID["kill-switch"], "state": "up"}), "state: 'up'"),
    ],
)
def test_errors_say_what_is_wrong(key: str, value: str | bytes, message: str) -> None:
    with pytest.raises(ControlRecordError) as err:
        parse_control(key, value)
    assert message in str(err.value)


def test_a_snooze_lasts_at_most_thirty_days() -> None:
    issued = parse_rfc3339_ms(COMMON["issued_at"])
    wire = dict(VALID["snooze:user:*:u-1"])
    wire["expires_at"] = "2026-12-02T12:00:00Z"  # exactly 30 days
    snooze = parse_control("snooze:user:*:u-1", wire)
    assert isinstance(snooze, Snooze) and snooze.expires_at_ms - issued == MAX_SNOOZE_MS
    wire["expires_at"] = "2026-12-02T12:00:00.001Z"
    with pytest.raises(ControlRecordError, match="at most 30 days"):
        parse_control("snooze:user:*:u-1", wire)


@pytest.mark.parametrize("key", ["list:allow:merchant:m-1", "snooze:user:*:u-1"])
@pytest.mark.parametrize("expires_at", ["2026-11-02T11:00:00Z", "2026-11-02T12:00:00Z"])
def test_an_expiry_must_be_after_the_issue(key: str, expires_at: str) -> None:
    """Beyond what a JSON Schema can say: a comparison of two fields."""
    assert validator().is_valid({**VALID[key], "expires_at": expires_at})
    with pytest.raises(ControlRecordError, match="expires_at: must be after issued_at"):
        parse_control(key, {**VALID[key], "expires_at": expires_at})


def test_keys_escape_separators_so_ids_cannot_alias() -> None:
    assert control_key("list", "allow", "user", "a:b") != control_key(
        "list", "allow", "user:a", "b"
    )
    wire = {**VALID["snooze:user:*:u-1"], "entity_id": "a:b", "rule_id": "r%1"}
    record = parse_control(None, wire)
    assert record.key() == "snooze:user:r%251:a%3Ab"
    assert isinstance(record, Snooze) and record.rule_id == "r%1"


def test_kinds_are_typed() -> None:
    records = {k: parse_control(k, w) for k, w in VALID.items()}
    assert isinstance(records["kill-switch"], KillSwitch)
    assert records["kill-switch"].state is Switch.ON
    assert isinstance(records["rule-mode:r1"], RuleMode)
    entry = records["list:allow:merchant:m-1"]
    assert isinstance(entry, ListEntry) and entry.active(0) and not entry.removed


def test_a_release_is_keyed_by_its_freeze_and_typed() -> None:
    record = parse_control(FREEZE_KEY, VALID[FREEZE_KEY])
    assert isinstance(record, Release) and record.release_type is ReleaseType.APPEAL_UPHELD
    assert record.key() == FREEZE_KEY and record.reason_code == "kyc.verified-2"
    with pytest.raises(ControlRecordError, match="issued by the workers"):
        parse_control(FREEZE_KEY, {**VALID[FREEZE_KEY], "release_type": "expired"})
    other = f"release:fz_{'1' * 32}"
    with pytest.raises(ControlRecordError, match="does not match"):
        parse_control(other, VALID[FREEZE_KEY])
