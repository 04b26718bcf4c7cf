"""The shipped JSON Schemas and AsyncAPI document agree with the code."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from detectors.contract import FIELDS, FieldKind, validate_event
from detectors.decisions import Alert
from detectors.errors import ContractViolation
from detectors.events import Topic
from stream.codec import DeadLetter, SourceRecord
from stream.contract_docs import render_schema, schema_filename
from stream.settings import TopicNames
from tests.unit.test_contract import VALID
from tests.unit.test_engine import BOOK, fired

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "contract" / "schemas"


def load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("topic", list(Topic))
def test_committed_input_schemas_equal_a_regeneration(topic: Topic) -> None:
    assert (SCHEMAS / schema_filename(topic)).read_bytes() == render_schema(topic), (
        "run `fraudstream contract` and commit the result"
    )


BAD_VALUES: dict[FieldKind, list[Any]] = {
    FieldKind.ID: [None, "", "x" * 129, 5, True, ["a"], {"a": 1}],
    FieldKind.TEXT: [None, "x" * 513, 5, False],
    FieldKind.MONEY: [None, -1, 10**15 + 1, 1.5, "100", True],
    FieldKind.CURRENCY: [None, "eur", "EURO", "E1R", 978],
    FieldKind.TIMESTAMP: [
        None,
        "2026-11-02T12:00:00",
        "2026-11-02 12:00:00Z",
        1,
        "yesterday",
        "2026-11-02T12:00:00.1234567890Z",
        "0001-01-01T00:00:00Z",
        "٢٠٢٦-11-02T12:00:00Z",
    ],
    FieldKind.INITIATOR: [None, "bot", "USER", 1],
}
GOOD_VALUES: dict[FieldKind, list[Any]] = {
    FieldKind.ID: ["a", "x" * 128, "ünï-cødé"],
    FieldKind.TEXT: ["", "x" * 512],
    FieldKind.MONEY: [0, 10**15, 1500.0],
    FieldKind.CURRENCY: ["EUR", "JPY"],
    FieldKind.TIMESTAMP: [
        "2026-11-02T12:00:00Z",
        "2026-11-02T12:00:00.123456789+05:30",
        "2026-11-02t12:00:00z",
    ],
    FieldKind.INITIATOR: ["user", "merchant", "platform"],
}


def corpus(topic: Topic) -> list[dict[str, Any]]:
    """Every field set to every good and bad value, plus every field removed."""
    base = VALID[topic]
    out = [dict(base), {**base, "unknown_extra": {"nested": [1, 2]}}]
    for spec in FIELDS[topic]:
        for value in GOOD_VALUES[spec.kind] + BAD_VALUES[spec.kind]:
            out.append({**copy.deepcopy(base), spec.name: value})
        out.append({k: v for k, v in base.items() if k != spec.name})
    return out


@pytest.mark.parametrize("topic", list(Topic))
def test_code_and_schema_accept_and_reject_the_same_payloads(topic: Topic) -> None:
    v = validator(topic.value)
    checked = 0
    for payload in corpus(topic):
        schema_ok = v.is_valid(payload)
        try:
            validate_event(topic, payload)
            code_ok = True
        except ContractViolation:
            code_ok = False
        assert schema_ok == code_ok, payload
        checked += 1
    assert checked > 30


def published(alert: Alert) -> Alert:
    """As the pipeline publishes it: with the version of its rule set."""
    return dataclasses.replace(alert, ruleset_version=BOOK.digest)


def test_alerts_match_the_published_schema() -> None:
    v = validator("risk-alerts")
    for cand in fired():
        v.validate(published(cand.alert).to_wire())
    assert not v.is_valid(cand.alert.to_wire())  # no ruleset_version


def test_dead_letters_match_the_published_schema() -> None:
    record = SourceRecord("orders", 0, 1, None, b"\xff", 0)
    letter = DeadLetter(record, "invalid_utf8", "bad", None)
    validator("fraud-dlq").validate(letter.to_wire(0, 64))
    kinds = load("fraud-dlq")["properties"]["error"]["properties"]["kind"]["enum"]
    assert "invalid_utf8" in kinds and "processing_error" in kinds


def test_freezes_match_the_published_schemas() -> None:
    from tests.unit.test_engine import freezes

    kinds = set()
    for f in freezes():
        kinds.add(f.kind.value)
        name = "fund-freezes" if f.kind.value == "fund_freeze" else "benefit-freezes"
        validator(name).validate(dataclasses.replace(f, ruleset_version=BOOK.digest).to_wire())
        assert not validator(name).is_valid(f.to_wire())
    assert kinds == {"fund_freeze", "benefit_freeze"}


def test_freeze_schemas_are_valid_and_accept_an_example() -> None:
    validator("benefit-freezes").validate(
        {
            "freeze_id": "fz_" + "0" * 32,
            "action": "freeze",
            "subject_type": "device",
            "subject_id": "d-1",
            "scope": "vouchers",
            "rule_id": "r",
            "reason_alert_id": "al_" + "1" * 32,
            "expires_at": "2026-11-03T00:00:00Z",
            "issued_at": "2026-11-02T00:00:00Z",
            "ruleset_version": "a" * 64,
        }
    )
    v = validator("fund-freezes")
    fund = {
        "freeze_id": "fz_" + "0" * 32,
        "action": "freeze",
        "merchant_id": "m-1",
        "scope": "payout:p-9",
        "amount_minor": 5000,
        "rule_id": "r",
        "reason_alert_id": "al_" + "1" * 32,
        "expires_at": "2026-11-03T00:00:00Z",
        "issued_at": "2026-11-02T00:00:00Z",
        "ruleset_version": "a" * 64,
    }
    v.validate(fund)
    assert not v.is_valid({**fund, "scope": "everything"})


def test_asyncapi_describes_every_topic_with_an_existing_schema() -> None:
    doc = yaml.safe_load((REPO / "contract" / "asyncapi.yaml").read_text())
    assert doc["asyncapi"].startswith("3.")
    addresses = {c["address"] for c in doc["channels"].values()}
    defaults = TopicNames()
    control = {defaults.control, defaults.control_audit, defaults.verdicts}
    assert addresses == {*defaults.inputs().values(), *defaults.outputs(), *control}
    for message in doc["components"]["messages"].values():
        ref = message["payload"]["$ref"]
        assert (REPO / "contract" / ref).resolve().exists(), ref
    receives = {
        doc["channels"][op["channel"]["$ref"].split("/")[-1]]["address"]
        for op in doc["operations"].values()
        if op["action"] == "receive"
    }
    assert receives == {*defaults.inputs().values(), defaults.control, defaults.verdicts}
