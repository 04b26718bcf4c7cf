from __future__ import annotations

import dataclasses

import pytest

from detectors import velocity
from detectors.errors import ConfigError
from detectors.rules import EntityType, Mode, Severity, VelocityRule

MIN = 60_000
RULE = VelocityRule(
    rule_id="user_order_velocity",
    version=3,
    entity_type=EntityType.USER,
    window_ms=10 * MIN,
    threshold=5,
    severity=Severity.HIGH,
    mode=Mode.ENFORCE,
    cooldown_ms=60 * MIN,
)


def judge(log: list[tuple[str, int]], trigger: str, rule: VelocityRule = RULE):  # type: ignore[no-untyped-def]
    t = dict(log)[trigger]
    return velocity.evaluate(
        rule,
        entity_id="u-1",
        trigger_event_id=trigger,
        trigger_topic="orders",
        trigger_ms=t,
        log=sorted(log, key=lambda e: (e[1], e[0])),
        now_ms=123,
    )


def burst(n: int, step_ms: int = MIN) -> list[tuple[str, int]]:
    return [(f"e{i}", 1_000_000 + i * step_ms) for i in range(n)]


def test_fires_at_threshold_with_evidence() -> None:
    log = burst(5)
    cand = judge(log, "e4")
    assert cand is not None
    wire = cand.alert.to_wire()
    assert wire["observed"] == 5 and wire["threshold"] == 5 and wire["margin"] == 0
    assert wire["evidence"]["event_ids"] == ["e0", "e1", "e2", "e3", "e4"]
    assert wire["evidence"]["count"] == 5
    assert wire["window"]["length_ms"] == 10 * MIN
    assert wire["trigger_event_id"] == "e4" and wire["trigger_topic"] == "orders"
    assert wire["rule_version"] == 3 and wire["mode"] == "enforce" and wire["severity"] == "high"
    assert cand.incident_end_ms - cand.incident_start_ms == 10 * MIN


def test_silent_below_threshold() -> None:
    assert judge(burst(4), "e3") is None


def test_silent_when_spread_wider_than_window() -> None:
    assert judge(burst(5, step_ms=3 * MIN), "e4") is None  # 5 orders over 12 minutes


def test_alert_id_does_not_depend_on_which_event_tipped_it() -> None:
    log = burst(6)
    first, other = judge(log, "e4"), judge(log, "e5")
    assert first is not None and other is not None
    # e5's busiest window starts at e0 too: same incident id.
    assert first.alert.alert_id == other.alert.alert_id
    assert first.alert.trigger_event_id != other.alert.trigger_event_id


def test_late_event_sees_the_burst_around_it() -> None:
    """An event arriving last but stamped first still finds the window ahead of it."""
    log = burst(5)
    cand = judge(log, "e0")
    assert cand is not None and cand.alert.observed == 5


def test_shadow_mode_is_carried_into_the_alert() -> None:
    shadow = dataclasses.replace(RULE, mode=Mode.SHADOW)
    cand = judge(burst(5), "e4", shadow)
    assert cand is not None and cand.alert.to_wire()["mode"] == "shadow"


def test_evidence_sample_is_capped_but_count_is_exact() -> None:
    cand = judge(burst(50, step_ms=1000), "e49")
    assert cand is not None
    ev = cand.alert.evidence
    assert ev["count"] == 50 and len(ev["event_ids"]) == velocity.EVIDENCE_SAMPLE
    assert ev["event_ids_truncated"] is True


@pytest.mark.parametrize(
    ("field", "value"), [("window_ms", 0), ("threshold", 0), ("cooldown_ms", -1), ("version", 0)]
)
def test_rule_spec_rejects_nonsense(field: str, value: int) -> None:
    args = {
        "rule_id": "r",
        "version": 1,
        "entity_type": EntityType.USER,
        "window_ms": 1,
        "threshold": 1,
        "severity": Severity.LOW,
        "mode": Mode.ENFORCE,
        "cooldown_ms": 0,
    }
    with pytest.raises(ConfigError) as info:
        VelocityRule(**{**args, field: value})  # type: ignore[arg-type]
    assert info.value.setting.startswith("r.")
