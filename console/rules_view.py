"""What the rules page shows of each rule in effect, pure: no I/O, no clock.

A rule's mode is its rule file's (`enforce` or `shadow`) as overridden by
the standing `rule-mode` control record of that rule, the way the workers
steer (detectors.control_effects.steer): `off` silences the rule, `shadow`
marks an enforcing rule's alerts shadow, `enforce` leaves the file's mode.
The rules in effect are those of the latest published ruleset when one is
indexed (the workers run it instead of their files), else the rule file's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from detectors.control import RuleMode, RuleModeSetting
from detectors.rules import Mode, Rule
from stream.verdict_scoring import VerdictScore

__all__ = [
    "FIRE_WINDOW_MS",
    "EffectiveMode",
    "RuleView",
    "effective_mode",
    "fires_per_hour",
    "rule_views",
]

FIRE_WINDOW_MS = 24 * 3_600_000
HOUR_MS = 3_600_000


class EffectiveMode(StrEnum):
    """What a rule does now: `off` never alerts, `shadow` alerts without
    freezing, `enforce` alerts and freezes as its actions say."""

    ENFORCE = "enforce"
    SHADOW = "shadow"
    OFF = "off"


def effective_mode(file_mode: Mode, override: RuleModeSetting | None) -> EffectiveMode:
    if override is RuleModeSetting.OFF:
        return EffectiveMode.OFF
    if override is RuleModeSetting.SHADOW:
        return EffectiveMode.SHADOW
    return EffectiveMode(file_mode.value)


def fires_per_hour(fires: int, window_ms: int = FIRE_WINDOW_MS) -> float:
    """The mean hourly rate of `fires` alerts over `window_ms`."""
    if window_ms <= 0:
        raise ValueError("the window must be positive")
    return fires * HOUR_MS / window_ms


@dataclass(frozen=True, slots=True)
class RuleView:
    rule_id: str
    description: str
    version: int
    file_mode: Mode
    override: RuleMode | None  # the standing control record, if any
    mode: EffectiveMode
    fires_24h: int
    per_hour: float
    score: VerdictScore  # the standing verdicts of the rule's alerts

    @property
    def precision(self) -> float | None:
        return self.score.precision


def rule_views(
    rules: Iterable[Rule],
    overrides: Mapping[str, RuleMode],
    fires: Mapping[str, int],
    scores: Iterable[VerdictScore],
) -> list[RuleView]:
    """One view per rule, in the rule file's order."""
    by_rule = {s.rule_id: s for s in scores}
    views = []
    for rule in rules:
        record = overrides.get(rule.rule_id)
        count = fires.get(rule.rule_id, 0)
        views.append(
            RuleView(
                rule_id=rule.rule_id,
                description=rule.description.strip(),
                version=rule.version,
                file_mode=rule.mode,
                override=record,
                mode=effective_mode(rule.mode, record.mode if record else None),
                fires_24h=count,
                per_hour=fires_per_hour(count),
                score=by_rule.get(rule.rule_id, VerdictScore(rule.rule_id, 0, 0, 0)),
            )
        )
    return views
