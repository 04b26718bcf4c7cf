"""The `ruleset` control record: its version (the canonical digest), the
strict parser, the snapshot and the follower keeping the last good one, and
what `control rules publish` shows before publishing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detectors.control import (
    ControlRecordError,
    Provenance,
    Ruleset,
)
from detectors.control_parsing import parse_control
from detectors.control_snapshot import EMPTY, ControlSnapshot
from detectors.rulebook import RulebookError, parse_rulebook
from detectors.ruleset_check import MAX_RULESET_BYTES
from detectors.ruleset_digest import CanonicalFormError, canonical_document
from stream.control_follower import Rejected, fold_messages
from stream.control_rules import build_ruleset, diff_rules
from stream.metrics import Metrics
from stream.ruleset_status import RulesetStatus

META = Provenance("ctl-r1", "alice", "tighter burst", 1_800_000_000_000)


def rule_block(rule_id: str, entity: str, threshold: int, action: str) -> str:
    """One counting rule over orders, as a rule file lists it."""
    return "".join(
        f"{line}\n"
        for line in (
            f"  - id: {rule_id}",
            "    version: 1",
            "    triggers: [orders]",
            f"    entity: {entity}",
            "    metric: {kind: count, topics: [orders], window: 10m}",
            '    compare: ">="',
            f"    threshold: {threshold}",
            "    severity: high",
            f"    action: {action}",
        )
    )


RULES = (
    '# a comment, which the version ignores\nruleset: swap-test\nruleset_version: "7"\nrules:\n'
    + rule_block("burst", "user", 3, "alert")
)
# The same document: other comments, key order, quoting, block instead of flow style.
REFORMATTED = """\
ruleset_version: '7'
ruleset: "swap-test"
rules:
- compare: '>='
  threshold: 3
  action: alert   # still an alert
  version: 1
  entity: user
  id: burst
  triggers:
  - orders
  metric:
    window: 10m
    topics: [orders]
    kind: count
  severity: high
"""


def record(text: str = RULES, meta: Provenance = META) -> Ruleset:
    return build_ruleset(text, "test", meta)


def test_the_version_is_the_sha256_of_the_canonical_document() -> None:
    book = parse_rulebook(RULES)
    canonical = json.dumps(
        {
            "ruleset": "swap-test",
            "ruleset_version": "7",
            "rules": [
                {
                    "id": "burst",
                    "version": 1,
                    "triggers": ["orders"],
                    "entity": "user",
                    "metric": {"kind": "count", "topics": ["orders"], "window": "10m"},
                    "compare": ">=",
                    "threshold": 3,
                    "severity": "high",
                    "action": "alert",
                }
            ],
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    assert b" " not in canonical.replace(b'"', b"")  # no whitespace between tokens
    assert book.digest == hashlib.sha256(canonical).hexdigest()
    assert len(book.digest) == 64 and book.version == "7"  # the file's own label, apart


def test_formatting_and_comments_do_not_change_the_version_and_a_threshold_does() -> None:
    assert parse_rulebook(REFORMATTED).digest == parse_rulebook(RULES).digest
    changed = RULES.replace("threshold: 3", "threshold: 4")
    assert parse_rulebook(changed).digest != parse_rulebook(RULES).digest


@pytest.mark.parametrize(
    ("old", "new", "message", "line"),
    [
        ("ruleset: swap-test", "ruleset: 2026-12-03", "ruleset: a date value has no JSON form", 2),
        ('ruleset_version: "7"', "ruleset_version: 2026-12-03", "ruleset_version: a date", 3),
        ("threshold: 3", "threshold: .nan", r"rules\[0\].threshold: nan has no JSON form", 11),
        ("threshold: 3", "threshold: .inf", "inf has no JSON form", 11),
    ],
)
def test_a_document_without_a_json_form_is_refused_where_it_is(
    old: str, new: str, message: str, line: int
) -> None:
    """Values the rule grammar lets through (a name, a label, a float) but
    that no canonical JSON can carry: `rules check` refuses them, with the line."""
    with pytest.raises(RulebookError, match=message) as err:
        parse_rulebook(RULES.replace(old, new))
    assert err.value.errors[0].line == line


def test_a_key_that_is_not_a_string_has_no_canonical_form() -> None:
    with pytest.raises(CanonicalFormError, match=r"rules\[0\]: key 1 is not a string"):
        canonical_document({"rules": [{1: "one"}]})


def test_canonical_non_ascii_is_itself() -> None:
    assert canonical_document({"b": "é", "a": [1, 2.5, None, True]}) == (
        '{"a":[1,2.5,null,true],"b":"é"}'.encode()
    )


def test_a_ruleset_record_round_trips_and_carries_its_parsed_rules() -> None:
    ruleset = record()
    wire = ruleset.to_wire()
    assert wire["kind"] == "ruleset" and wire["rules_yaml"] == RULES
    assert wire["ruleset_version"] == parse_rulebook(RULES).digest == ruleset.ruleset_version
    parsed = parse_control("ruleset", orjson.dumps(wire))
    assert parsed == ruleset and isinstance(parsed, Ruleset)
    assert [r.rule_id for r in parsed.rulebook.rules] == ["burst"]
    assert parsed.meta.actor == "alice" and parsed.meta.reason == "tighter burst"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ruleset_version": "0" * 64}, "is not the digest of rules_yaml"),
        ({"rules_yaml": RULES.replace("threshold: 3", "threshold: 2")}, "is not the digest"),
        ({"ruleset_version": "A" * 64}, "64 lowercase hex digits"),
        ({"rules_yaml": RULES.replace("count", "cnt")}, "not a valid rule file"),
        ({"rules_yaml": "rules: [\n"}, "not valid YAML"),
        ({"rules_yaml": ""}, "rules_yaml: the rule file's text expected"),
        ({"rules_yaml": "#" * (MAX_RULESET_BYTES + 1)}, "1 to 262144 bytes"),
        ({"rules_yaml": None}, "rules_yaml"),
        ({"extra": 1}, "unknown fields: extra"),
    ],
)
def test_a_tampered_or_invalid_ruleset_is_refused(change: dict[str, object], message: str) -> None:
    wire = {**record().to_wire(), **change}
    with pytest.raises(ControlRecordError, match=message) as err:
        parse_control("ruleset", wire)
    assert err.value.kind == "ruleset"


def test_a_ruleset_has_one_key() -> None:
    with pytest.raises(ControlRecordError, match="does not match"):
        parse_control("ruleset:x", record().to_wire())


@dataclass
class Message:
    offset: int
    key: bytes | None
    value: bytes | None


def message(offset: int, wire: dict[str, object]) -> Message:
    return Message(offset, b"ruleset", orjson.dumps(wire))


def bad_wire() -> dict[str, object]:
    return {**record().to_wire(), "ruleset_version": "f" * 64}


def test_the_follower_keeps_the_last_good_ruleset_and_knows_the_latest_was_refused() -> None:
    metrics = Metrics(CollectorRegistry())
    status = RulesetStatus(metrics)
    rejected: list[Rejected] = []

    def refused(item: Rejected) -> None:
        rejected.append(item)
        status.refused(item)

    def latest_refused() -> float | None:
        return metrics.registry.get_sample_value("fraud_ruleset_refused")

    good = message(0, record().to_wire())
    snapshot = fold_messages(EMPTY, [good, message(1, bad_wire())], refused, status.accepted)
    assert snapshot.ruleset == record() and latest_refused() == 1
    assert [(r.offset, r.error.kind) for r in rejected] == [(1, "ruleset")]
    newer = record(RULES.replace("threshold: 3", "threshold: 5"))
    snapshot = fold_messages(snapshot, [message(2, newer.to_wire())], refused, status.accepted)
    assert snapshot.ruleset == newer and latest_refused() == 0
    # A good record then a bad one in the same fetch: the latest is the refused one.
    both = [message(3, record().to_wire()), message(4, bad_wire())]
    snapshot = fold_messages(snapshot, both, refused, status.accepted)
    assert snapshot.ruleset == record() and latest_refused() == 1


def test_a_saved_snapshot_keeps_the_ruleset() -> None:
    snapshot = fold_messages(EMPTY, [message(0, record().to_wire())], print)
    again = ControlSnapshot.from_wire(orjson.loads(orjson.dumps(snapshot.to_wire())))
    assert again.ruleset == snapshot.ruleset
    assert again.ruleset is not None and again.ruleset.rulebook.digest == record().ruleset_version
    assert EMPTY.ruleset is None


def test_the_diff_names_added_removed_and_changed_rules() -> None:
    old = parse_rulebook(RULES)
    body = RULES.split("rules:\n")[1]
    new = parse_rulebook(RULES + body.replace("burst", "pair"))
    diff = diff_rules(old, new)
    assert diff.added == ("pair",) and diff.removed == () and diff.changed == ()
    assert diff_rules(new, old).removed == ("pair",)
    tighter = parse_rulebook(RULES.replace("threshold: 3", "threshold: 2").replace("high", "low"))
    assert diff_rules(old, tighter).changed == (("burst", ("threshold", "severity")),)
    assert diff_rules(tighter, new).lines() == ["  + pair", "  ~ burst (threshold, severity)"]
    assert diff_rules(old, parse_rulebook(REFORMATTED)).lines() == [
        "  no rule added, removed or changed"
    ]


def test_publish_refuses_an_invalid_file_before_talking_to_kafka(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream import control_cli
    from stream.cli import build_parser
    from stream.settings import Settings

    settings = Settings(kafka_bootstrap="127.0.0.1:9")  # nothing listens: never reached
    bad = tmp_path / "rules.yaml"
    bad.write_text(RULES.replace("kind: count", "kind: cnt"))

    def publish(path: Path) -> int:
        argv = ["control", "rules", "publish", str(path), "--reason", "r"]
        return control_cli.run(settings, build_parser().parse_args(argv))

    assert publish(bad) == 1
    err = capsys.readouterr().err
    assert err.startswith("not published: ") and "rules[0].metric.kind" in err
    assert publish(tmp_path / "missing.yaml") == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_record_fits_kafkas_default_message_size() -> None:
    """1 MiB (max.message.bytes) on both control topics, which are created
    without an override: the shipped file, and the worst case of the bound."""
    from stream.control_cli import encode
    from stream.rules_loading import DEFAULT_RULES

    shipped = (Path(__file__).parents[2] / "stream" / "rulesets" / DEFAULT_RULES).read_text()
    assert len(encode(record(shipped))) < 40 * 1024
    padding = '# "\\\n' * ((MAX_RULESET_BYTES - len(RULES)) // 5)  # 5 bytes, 7 escaped
    worst = record(RULES + padding)
    assert len(worst.rules_yaml.encode()) <= MAX_RULESET_BYTES
    assert parse_control("ruleset", encode(worst)) == worst  # within the bound: publishable
    assert len(encode(worst)) < 1024 * 1024


def test_rules_check_prints_the_version_decisions_will_carry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stream.cli import main

    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    assert main(["rules", "check", str(path)]) == 0
    assert f"ruleset_version {parse_rulebook(REFORMATTED).digest}" in capsys.readouterr().out
