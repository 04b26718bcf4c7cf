"""Freeze budgets and the circuit breaker, pure parts: the budget arithmetic,
the records the workers publish, what a tripped breaker holds, the rule
file's `guardrail` section, the breaker settings and its CLI command."""

from __future__ import annotations

import pytest

from detectors.control import (
    Breaker,
    BreakerState,
    KillSwitch,
    Provenance,
    RuleMode,
    RuleModeSetting,
    Switch,
)
from detectors.control_effects import breaker_suppression, freeze_suppression
from detectors.control_parsing import parse_control
from detectors.control_snapshot import EMPTY, fold
from detectors.decisions import Freeze, Suppression
from detectors.errors import ConfigError
from detectors.guardrails import (
    BUCKET_MS,
    HISTORY_BUCKETS,
    BreakerLimits,
    breaker_generation,
    bucket_of,
    default_budget,
    demotion,
    freeze_budget,
    p99,
    rule_generation,
    trip,
)
from detectors.money import PerCurrency
from detectors.rulebook import parse_rulebook
from detectors.rules import ActionKind, Severity
from detectors.rules_entities import EntityType
from stream.control_cli import build_record, describe_snapshot
from stream.settings import Settings, from_env, to_env
from tests.unit.test_control_cli import args
from tests.unit.test_rulebook import GOOD_RULE, errors

T = 1_800_000_000_000
META = Provenance("c1", "alice", "test", T)


def guarded(section: str) -> str:
    return "rules:\n" + GOOD_RULE.replace(
        "    severity: high\n", f"    severity: high\n    {section}\n"
    )


def test_p99_counts_empty_buckets_as_zero() -> None:
    assert p99([]) == 0
    assert p99([50] * 10) == 0  # 10 busy buckets of 1008 are under 1 %
    assert p99([50] * 11) == 50
    assert p99([1] * 20 + [9] * 11) == 9
    assert p99(list(range(2000))) == 1989  # only the last HISTORY_BUCKETS count
    assert p99([3, 7], buckets=2) == 7


def test_the_default_budget_is_at_least_five_and_three_times_the_p99() -> None:
    assert default_budget([]) == 5
    assert default_budget([1] * 11) == 5
    assert default_budget([4] * HISTORY_BUCKETS) == 12
    (rule,) = parse_rulebook(f"rules:\n{GOOD_RULE}").rules
    assert freeze_budget(rule, [4] * HISTORY_BUCKETS) == 12
    (capped,) = parse_rulebook(guarded("guardrail: {freeze_budget_10m: 2}")).rules
    assert capped.guardrail.freeze_budget_10m == 2
    assert freeze_budget(capped, [4] * HISTORY_BUCKETS) == 2


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("guardrail: 5", "expected a mapping"),
        ("guardrail: {budget: 5}", "unknown key(s): budget"),
        ("guardrail: {freeze_budget_10m: 0}", "must be between 1 and 1000000"),
        ("guardrail: {freeze_budget_10m: '5'}", "expected an integer"),
        ("guardrail: {freeze_budget_10m: true}", "got a boolean"),
    ],
)
def test_a_bad_guardrail_section_is_refused_with_its_path(section: str, message: str) -> None:
    (error,) = errors(guarded(section))
    assert "rules[0].guardrail" in error and message in error


def test_event_time_buckets() -> None:
    assert bucket_of(BUCKET_MS * 7 + 1) == 7 and bucket_of(BUCKET_MS * 7 - 1) == 6


def test_the_breaker_limit_is_the_larger_of_the_minimum_and_the_share() -> None:
    limits = BreakerLimits(freeze_share=0.01, min_freezes=20)
    assert limits.freeze_limit(0) == 20
    assert limits.freeze_limit(5_000) == 50
    assert limits.freeze_limit(2_099) == 20


def test_the_records_the_workers_publish_parse_and_are_idempotent() -> None:
    demoted = demotion("r1", "0", 3_000_000, 5, 5, T)
    again = demotion("r1", "0", 3_000_000, 5, 5, T + 999)
    assert again.meta.control_id == demoted.meta.control_id  # one command, whoever issues it
    assert demoted.mode is RuleModeSetting.SHADOW and demoted.meta.actor == "guardrail"
    assert "5 distinct entities" in demoted.meta.reason and "budget 5" in demoted.meta.reason
    tripped = trip("0", 3_000_000, "21 fund freezes, limit 20", T)
    assert tripped.state is BreakerState.TRIPPED and tripped.meta.actor == "breaker"
    for record in (demoted, tripped):
        assert parse_control(record.key(), record.to_wire()) == record
    assert tripped.key() == "breaker"


def test_generations_follow_the_last_record() -> None:
    assert rule_generation(EMPTY, "r1") == "0" and breaker_generation(EMPTY) == "0"
    snap = fold(
        [
            ("rule-mode:r1", RuleMode("r1", RuleModeSetting.ENFORCE, META)),
            ("breaker", Breaker(BreakerState.RESET, Provenance("c9", "bob", "ok", T))),
        ]
    )
    assert rule_generation(snap, "r1") == "c1" and breaker_generation(snap) == "c9"
    assert not snap.breaker_tripped


def fund(subject: str = "m1", kind: ActionKind = ActionKind.FUND_FREEZE) -> Freeze:
    return Freeze(
        "fz_1", kind, EntityType.MERCHANT, subject, "payouts", "r1", Severity.HIGH, "al_1", T + 1, T
    )


def test_a_tripped_breaker_holds_fund_freezes_only() -> None:
    tripped = fold([("breaker", Breaker(BreakerState.TRIPPED, META))])
    assert tripped.breaker_tripped
    assert breaker_suppression(tripped, fund()) is Suppression.BREAKER
    assert freeze_suppression(tripped, fund(), T) is Suppression.BREAKER
    assert freeze_suppression(tripped, fund(kind=ActionKind.BENEFIT_FREEZE), T) is None
    reset = fold([("breaker", Breaker(BreakerState.RESET, META))], tripped)
    assert freeze_suppression(reset, fund(), T) is None
    both = fold([("kill-switch", KillSwitch(Switch.ON, META))], tripped)
    assert freeze_suppression(both, fund(), T) is Suppression.KILL_SWITCH


def test_the_cli_trips_and_resets_the_breaker() -> None:
    record = build_record(args("breaker", "reset", "--reason", "false alarm"), META)
    assert record == Breaker(BreakerState.RESET, META)
    tripped = fold([("breaker", Breaker(BreakerState.TRIPPED, META))])
    assert "breaker TRIPPED" in describe_snapshot(tripped)
    assert "breaker armed" in describe_snapshot(EMPTY)


def test_breaker_settings_parse_validate_and_round_trip() -> None:
    env = {
        "FRAUD_BREAKER_FREEZE_SHARE": "0.05",
        "FRAUD_BREAKER_MIN_FREEZES": "7",
        "FRAUD_BREAKER_VALUE_CAPS": "EUR:5000000, JPY:80000000",
    }
    s = from_env(env)
    assert s.breaker_freeze_share == 0.05 and s.breaker_min_freezes == 7
    assert s.breaker_value_caps == PerCurrency.of({"EUR": 5_000_000, "JPY": 80_000_000})
    assert from_env(to_env(s)) == s
    assert from_env(to_env(Settings())) == Settings()
    for name, bad in [
        ("FRAUD_BREAKER_FREEZE_SHARE", "0"),
        ("FRAUD_BREAKER_FREEZE_SHARE", "1.5"),
        ("FRAUD_BREAKER_MIN_FREEZES", "0"),
        ("FRAUD_BREAKER_VALUE_CAPS", "EUR"),
        ("FRAUD_BREAKER_VALUE_CAPS", "eur:5"),
        ("FRAUD_BREAKER_VALUE_CAPS", "EUR:5.5"),
        ("FRAUD_BREAKER_VALUE_CAPS", "EUR:5,EUR:6"),
    ]:
        with pytest.raises(ConfigError, match=name):
            from_env({name: bad})
