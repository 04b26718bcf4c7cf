"""`fraudstream score`: recall, expected actions, look-alikes frozen and freeze
precision from a labels file and decision lines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.errors import InputFileError
from detectors.events import Topic
from detectors.rules_entities import EntityType
from stream.scoring import as_json, format_score, read_decisions, score
from stream.simulation.labels import (
    EntityRef,
    ExpectedAction,
    Family,
    Labels,
    ScenarioLabel,
    ScenarioName,
)


def scenario(
    sid: str,
    family: Family,
    action: ExpectedAction,
    entities: list[tuple[EntityType, str]],
    expect_on: list[tuple[EntityType, str]],
    fraud: bool = True,
) -> ScenarioLabel:
    return ScenarioLabel(
        scenario_id=sid,
        scenario=ScenarioName.DEVICE_FARM if fraud else ScenarioName.FAMILY_TABLET,
        family=family,
        fraud=fraud,
        expected_action=action,
        entities=tuple(EntityRef(t, i) for t, i in entities),
        expect_on=tuple(EntityRef(t, i) for t, i in expect_on),
        start_ms=0,
        end_ms=1,
        description="",
        lookalike_of=None if fraud else ScenarioName.DEVICE_FARM,
    )


LABELS = Labels(
    seed=1,
    scale=1.0,
    start_ms=0,
    days=1,
    events=20_000,
    events_by_topic={Topic.ORDERS: 20_000},
    scenarios=(
        scenario(
            "farm-1",
            Family.VOUCHER_ABUSE,
            ExpectedAction.BENEFIT_FREEZE,
            [(EntityType.DEVICE, "d-farm"), (EntityType.USER, "farm-a")],
            [(EntityType.DEVICE, "d-farm")],
        ),
        scenario(
            "burst-1",
            Family.VELOCITY,
            ExpectedAction.ALERT,
            [(EntityType.USER, "bot")],
            [(EntityType.USER, "bot")],
        ),
        scenario(
            "ato-1",
            Family.PAYOUT_RISK,
            ExpectedAction.FUND_FREEZE,
            [(EntityType.MERCHANT, "m-ato")],
            [(EntityType.MERCHANT, "m-ato")],
        ),
        scenario(
            "tablet-1",
            Family.LOOKALIKE,
            ExpectedAction.NONE,
            [(EntityType.DEVICE, "d-family")],
            [],
            fraud=False,
        ),
    ),
)


def alert(entity_type: str, entity_id: str, mode: str = "enforce", **key: str) -> dict[str, Any]:
    evidence = {"key": key} if key else {}
    return {
        "alert_id": f"al_{entity_id}",
        "rule_id": "r",
        "entity_type": entity_type,
        "entity_id": entity_id,
        "mode": mode,
        "evidence": evidence,
    }


def benefit(subject_type: str, subject_id: str) -> dict[str, Any]:
    return {
        "freeze_id": f"fz_{subject_id}",
        "rule_id": "r",
        "subject_type": subject_type,
        "subject_id": subject_id,
    }


def write(tmp_path: Path, values: list[dict[str, Any]]) -> Path:
    path = tmp_path / "decisions.jsonl"
    lines = [orjson.dumps({"topic": "t", "value": v}) for v in values]
    lines.append(orjson.dumps({"topic": "fraud-dlq", "value": {"error": {"kind": "x"}}}))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_perfect_run_is_acceptable(tmp_path: Path) -> None:
    decisions = read_decisions(
        write(
            tmp_path,
            [
                alert("device", "d-farm"),
                benefit("device", "d-farm"),
                alert("user", "bot"),
                {"freeze_id": "fz_m", "rule_id": "r", "merchant_id": "m-ato", "scope": "payout"},
                alert("device", "d-family"),  # an alert on a look-alike is allowed
            ],
        )
    )
    result = score(LABELS, decisions)
    assert result.acceptable(), format_score(result)
    assert result.freezes == 2 and result.freeze_precision == 1.0
    assert result.alerts == 3 and result.alerts_per_10k == 1.5
    assert (result.alerts_on_fraud, result.alerts_on_lookalikes) == (2, 1)
    assert as_json(result)["families"]["payout_risk"]["expected_action_rate"] == 1.0


def test_alert_where_a_freeze_is_expected_counts_as_detected_but_not_actioned(
    tmp_path: Path,
) -> None:
    decisions = read_decisions(write(tmp_path, [alert("device", "d-farm"), alert("user", "bot")]))
    result = score(LABELS, decisions)
    farm = result.families["voucher_abuse"]
    assert (farm.detected, farm.expected_action, farm.missed) == (1, 0, ["farm-1"])
    assert result.families["payout_risk"].detected == 0
    assert not result.acceptable()
    assert "acceptance: FAIL" in format_score(result)


def test_frozen_lookalike_and_unlabelled_entities_cost_precision(tmp_path: Path) -> None:
    values = [benefit("device", "d-farm"), benefit("device", "d-family"), benefit("user", "joe")]
    result = score(LABELS, read_decisions(write(tmp_path, values)))
    assert result.lookalikes_frozen == ["tablet-1"]
    assert result.legit_frozen == [("device", "d-family"), ("user", "joe")]
    assert result.freeze_precision == pytest.approx(1 / 3)


def test_compound_key_alerts_reach_every_part_and_shadow_alerts_do_not_count(
    tmp_path: Path,
) -> None:
    values = [
        alert("merchant", "m-x", merchant="m-x", user="bot"),
        alert("user", "farm-a", "shadow"),
    ]
    result = score(LABELS, read_decisions(write(tmp_path, values)))
    assert result.families["velocity"].detected == 1  # via the key's user part
    assert result.families["voucher_abuse"].detected == 0  # shadow only
    assert result.shadow_alerts == 1 and result.alerts == 1


def test_a_line_that_is_not_a_decision_record_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"topic": "x"}\n')
    with pytest.raises(InputFileError, match=r"bad\.jsonl:1: not a decision line"):
        read_decisions(path)


def test_score_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main
    from stream.simulation.labels import write_labels

    labels = tmp_path / "labels.json"
    write_labels(LABELS, labels)
    perfect = write(
        tmp_path,
        [
            benefit("device", "d-farm"),
            alert("user", "bot"),
            {"freeze_id": "fz_m", "rule_id": "r", "merchant_id": "m-ato", "scope": "payout"},
        ],
    )
    out = tmp_path / "score.json"
    assert main(["score", str(labels), str(perfect), "--json", str(out)]) == 0
    assert orjson.loads(out.read_bytes())["acceptable"] is True
    assert "acceptance: PASS" in capsys.readouterr().out
    lacking = write(tmp_path, [alert("user", "bot")])
    assert main(["score", str(labels), str(lacking)]) == 1
    assert main(["score", str(tmp_path / "missing.json"), str(lacking)]) == 2


def test_republished_decisions_count_once(tmp_path: Path) -> None:
    twice = [benefit("device", "d-farm"), benefit("device", "d-farm"), alert("user", "bot")]
    result = score(LABELS, read_decisions(write(tmp_path, [*twice, alert("user", "bot")])))
    assert result.freezes == 1 and result.alerts == 1


def test_labels_without_fraud_scenarios_do_not_pass() -> None:
    empty = Labels(1, 1.0, 0, 1, 10, {Topic.ORDERS: 10}, ())
    assert not score(empty, []).acceptable()


def test_each_rule_is_scored_on_its_own(tmp_path: Path) -> None:
    """Two rules: one precise, one that froze a look-alike and alerted on
    two honest users; rates are per 1,000 active entities of the type."""
    values = [
        {**alert("device", "d-farm"), "rule_id": "farm"},
        {**benefit("device", "d-farm"), "rule_id": "farm"},
        {**benefit("device", "d-family"), "rule_id": "noisy"},
        {**alert("user", "ann"), "rule_id": "noisy"},
        {**alert("user", "ben"), "alert_id": "al_ben", "rule_id": "noisy"},
        {**alert("user", "bot"), "alert_id": "al_bot2", "rule_id": "noisy"},
    ]
    labels = dataclasses.replace(
        LABELS, active_entities={EntityType.USER: 500, EntityType.DEVICE: 1_500}
    )
    result = score(labels, read_decisions(write(tmp_path, values)))
    rows = {r.rule_id: r for r in result.rules}
    farm, noisy = rows["farm"], rows["noisy"]
    assert (farm.alerts, farm.freezes, farm.precision, farm.frozen_not_fraud) == (1, 1, 1.0, 0)
    assert farm.alerted_per_1k == pytest.approx(1000 / 1500)
    assert (noisy.alerts, noisy.freezes, noisy.frozen_not_fraud) == (3, 1, 1)
    assert noisy.precision == pytest.approx(1 / 4)  # only the alert on "bot" is fraud
    assert noisy.alerted_per_1k == pytest.approx(1000 * 3 / 500)
    assert result.active_entities == 2_000
    assert result.frozen_share == pytest.approx(1 / 2_000)  # d-family
    assert result.alerted_share == pytest.approx(2 / 2_000)  # ann, ben
    text = format_score(result)
    assert "noisy" in text and "0.050% frozen" in text
    assert as_json(result)["rules"]["noisy"]["frozen_not_fraud"] == 1


def test_too_many_honest_entities_frozen_or_alerted_fail_the_bar(tmp_path: Path) -> None:
    values = [
        alert("device", "d-farm"),
        benefit("device", "d-farm"),
        alert("user", "bot"),
        {"freeze_id": "fz_m", "rule_id": "r", "merchant_id": "m-ato", "scope": "payout"},
    ]
    decisions = read_decisions(write(tmp_path, values))
    few = dataclasses.replace(LABELS, active_entities={EntityType.USER: 100})
    assert score(few, decisions).acceptable()
    honest = [alert("user", f"u{i}") | {"alert_id": f"al_u{i}"} for i in range(2)]
    decisions = read_decisions(write(tmp_path, [*values, *honest]))
    assert not score(few, decisions).acceptable()  # 2 of 100 alerted: over 1 %
    assert score(LABELS, decisions).acceptable()  # entities not counted: no share to judge
