"""`fraudstream score LABELS DECISIONS`: how well the decisions of a run
(a backtest's output, or the alerts and freezes read back from Kafka) match
labelled traffic (the simulator's labels file).

What is measured, and why:
- per family, recall: a fraud scenario counts as detected when any alert or
  freeze lands on one of its entities;
- per family, the expected-action rate: the action the scenario calls for
  (an alert, a benefit freeze or a fund freeze) landed on the entity it
  should (a freeze on the device of a device farm, not just an alert);
- wrongly frozen legitimate entities: any freeze whose subject is not part of
  a fraud scenario, with the labelled look-alikes (a holiday rush, a family
  tablet...) counted separately because they are the cases a good rule set
  must leave alone;
- freeze precision: freezes on fraud entities over all freezes;
- alerts per 10k events: the load risk ops will see;
- legitimate entities frozen and alerted on, as shares of the active
  entities the labels count, and the same per rule (stream.rule_scoring).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from detectors.errors import InputFileError
from stream.rule_scoring import RuleScore, format_rule_scores, rule_scores, rule_scores_json
from stream.simulation.labels import EntityRef, ExpectedAction, Labels, ScenarioLabel, load_labels

__all__ = [
    "MAX_ALERTED_SHARE",
    "MAX_FROZEN_SHARE",
    "Decision",
    "Entity",
    "FamilyScore",
    "Score",
    "as_json",
    "format_score",
    "read_decisions",
    "score",
    "score_files",
]

Entity = tuple[str, str]  # (entity type, id)
# Legitimate entities a rule set may freeze, and alert on, as a share of the
# active entities: a freeze costs an honest customer or merchant, an alert
# costs an analyst's look.
MAX_FROZEN_SHARE = 0.001
MAX_ALERTED_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class Decision:
    """One alert or freeze, reduced to what scoring needs."""

    kind: str  # alert | benefit_freeze | fund_freeze
    subject: Entity
    rule_id: str
    mode: str = "enforce"
    related: tuple[Entity, ...] = ()  # the other parts of a compound key


@dataclass(slots=True)
class FamilyScore:
    scenarios: int = 0
    detected: int = 0
    expected_action: int = 0
    missed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Score:
    events: int
    families: dict[str, FamilyScore]
    freezes: int
    freezes_on_fraud: int
    lookalikes_frozen: list[str]  # scenario ids
    legit_frozen: list[Entity]  # frozen subjects outside every fraud scenario
    alerts: int
    shadow_alerts: int
    alerts_on_fraud: int = 0  # enforce-mode alerts whose entity (or key part) is fraud
    alerts_on_lookalikes: int = 0
    rules: tuple[RuleScore, ...] = ()
    active_entities: int = 0  # distinct rated entities in the events (0: not counted)
    alerted_not_fraud: int = 0  # distinct subjects of enforce-mode alerts outside the fraud

    @property
    def frozen_share(self) -> float:
        """Legitimate entities frozen, over the active entities."""
        return len(self.legit_frozen) / self.active_entities if self.active_entities else 0.0

    @property
    def alerted_share(self) -> float:
        """Legitimate entities alerted on, over the active entities."""
        return self.alerted_not_fraud / self.active_entities if self.active_entities else 0.0

    @property
    def freeze_precision(self) -> float:
        return self.freezes_on_fraud / self.freezes if self.freezes else 1.0

    @property
    def alerts_per_10k(self) -> float:
        return 10_000 * self.alerts / self.events if self.events else 0.0

    def acceptable(self) -> bool:
        """The catalogue's acceptance bar: every family detected, every expected
        action taken, no look-alike frozen, freeze precision >= 0.95, and
        (when the labels count active entities) at most 0.1 % of them frozen
        and 1 % alerted on without being fraud. A labels file without fraud
        scenarios proves nothing and does not pass."""
        return (
            bool(self.families)
            and all(
                f.detected == f.scenarios and f.expected_action == f.scenarios
                for f in self.families.values()
            )
            and not self.lookalikes_frozen
            and self.freeze_precision >= 0.95
            and self.frozen_share <= MAX_FROZEN_SHARE
            and self.alerted_share <= MAX_ALERTED_SHARE
        )


def read_decisions(path: Path) -> list[Decision]:
    """Decision lines {"topic": ..., "value": {...}}; the kind is told by the
    value's shape, so renamed output topics need no configuration here.
    Dead letters and anything else are skipped."""
    out: list[Decision] = []
    seen: set[str] = set()  # outputs are at-least-once: count each id once
    with path.open("rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = orjson.loads(line)["value"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputFileError(str(path), number, f"not a decision line ({exc})") from None
            decision = _decision(value)
            if decision is None:
                continue
            key = str(value.get("alert_id") or value["freeze_id"])
            if key not in seen:
                seen.add(key)
                out.append(decision)
    return out


def _decision(value: Any) -> Decision | None:
    if not isinstance(value, dict):
        return None
    if "alert_id" in value:
        key = value.get("evidence", {}).get("key", {})
        related = tuple((str(t), str(i)) for t, i in key.items())
        subject = (str(value["entity_type"]), str(value["entity_id"]))
        return Decision("alert", subject, str(value["rule_id"]), str(value["mode"]), related)
    if "freeze_id" in value and "subject_type" in value:
        subject = (str(value["subject_type"]), str(value["subject_id"]))
        return Decision("benefit_freeze", subject, str(value["rule_id"]))
    if "freeze_id" in value:
        return Decision(
            "fund_freeze", ("merchant", str(value["merchant_id"])), str(value["rule_id"])
        )
    return None


def _keys(refs: Sequence[EntityRef]) -> set[Entity]:
    return {(r.type.value, r.id) for r in refs}


def score(labels: Labels, decisions: Sequence[Decision]) -> Score:
    fraud_entities = {e for s in labels.fraud() for e in _keys(s.entities)}
    on_entity: dict[Entity, list[Decision]] = defaultdict(list)
    for d in decisions:
        on_entity[d.subject].append(d)
        for other in d.related:
            on_entity[other].append(d)
    families: dict[str, FamilyScore] = {}
    for s in labels.fraud():
        _score_scenario(families.setdefault(s.family.value, FamilyScore()), s, on_entity)
    freezes = [d for d in decisions if d.kind != "alert"]
    frozen = {d.subject for d in freezes}
    lookalikes = [s.scenario_id for s in labels.lookalikes() if frozen & _keys(s.entities)]
    alerts = [d for d in decisions if d.kind == "alert" and d.mode != "shadow"]
    lookalike_entities = {e for s in labels.lookalikes() for e in _keys(s.entities)}
    active = {t.value: n for t, n in labels.active_entities.items()}
    return Score(
        events=labels.events,
        families=dict(sorted(families.items())),
        freezes=len(freezes),
        freezes_on_fraud=sum(1 for d in freezes if d.subject in fraud_entities),
        lookalikes_frozen=lookalikes,
        legit_frozen=sorted(frozen - fraud_entities),
        alerts=len(alerts),
        shadow_alerts=sum(1 for d in decisions if d.kind == "alert" and d.mode == "shadow"),
        alerts_on_fraud=sum(1 for d in alerts if _touches(d, fraud_entities)),
        alerts_on_lookalikes=sum(1 for d in alerts if _touches(d, lookalike_entities)),
        rules=rule_scores(decisions, fraud_entities, active),
        active_entities=sum(active.values()),
        alerted_not_fraud=len({d.subject for d in alerts} - fraud_entities),
    )


def _touches(d: Decision, entities: set[Entity]) -> bool:
    return d.subject in entities or bool(set(d.related) & entities)


def _score_scenario(
    family: FamilyScore, s: ScenarioLabel, on_entity: dict[Entity, list[Decision]]
) -> None:
    family.scenarios += 1
    seen = [d for e in _keys(s.entities) for d in on_entity.get(e, []) if d.mode != "shadow"]
    if seen:
        family.detected += 1
    targets = _keys(s.expect_on)
    wanted = s.expected_action.value
    hit = s.expected_action is ExpectedAction.NONE or any(
        d.kind == wanted and (d.subject in targets or set(d.related) & targets) for d in seen
    )
    if hit:
        family.expected_action += 1
    else:
        family.missed.append(s.scenario_id)


def format_score(result: Score) -> str:
    lines = [f"{'family':<16} {'scenarios':>9} {'recall':>7} {'expected action':>16}  missed"]
    for name, f in result.families.items():
        recall = f.detected / f.scenarios if f.scenarios else 1.0
        action = f.expected_action / f.scenarios if f.scenarios else 1.0
        missed = ", ".join(f.missed) or "-"
        lines.append(f"{name:<16} {f.scenarios:>9} {recall:>7.2f} {action:>16.2f}  {missed}")
    lines += [
        f"freezes: {result.freezes}, on fraud entities: {result.freezes_on_fraud}, "
        f"precision {result.freeze_precision:.3f}",
        f"look-alikes frozen: {len(result.lookalikes_frozen)} "
        f"{', '.join(result.lookalikes_frozen)}".rstrip(),
        f"legitimate entities frozen: {len(result.legit_frozen)} "
        f"{', '.join(f'{t}:{i}' for t, i in result.legit_frozen[:10])}".rstrip(),
        f"alerts: {result.alerts} ({result.alerts_per_10k:.1f} per 10k events), "
        f"{result.alerts_on_fraud} on fraud entities, {result.alerts_on_lookalikes} on "
        f"look-alikes; shadow alerts: {result.shadow_alerts}",
    ]
    if result.active_entities:
        lines.append(
            f"of {result.active_entities} active entities: {result.frozen_share:.3%} frozen "
            f"and {result.alerted_share:.3%} alerted on without being fraud "
            f"(at most {MAX_FROZEN_SHARE:.1%} and {MAX_ALERTED_SHARE:.0%})"
        )
    lines += [
        format_rule_scores(result.rules),
        "acceptance: " + ("PASS" if result.acceptable() else "FAIL"),
    ]
    return "\n".join(lines)


def score_files(labels_path: Path, decisions_path: Path) -> Score:
    return score(load_labels(labels_path), read_decisions(decisions_path))


def as_json(result: Score) -> dict[str, Any]:
    return {
        "events": result.events,
        "families": {
            name: {
                "scenarios": f.scenarios,
                "recall": f.detected / f.scenarios if f.scenarios else 1.0,
                "expected_action_rate": f.expected_action / f.scenarios if f.scenarios else 1.0,
                "missed": f.missed,
            }
            for name, f in result.families.items()
        },
        "freezes": result.freezes,
        "freeze_precision": result.freeze_precision,
        "lookalikes_frozen": result.lookalikes_frozen,
        "legit_frozen": [f"{t}:{i}" for t, i in result.legit_frozen],
        "alerts": result.alerts,
        "alerts_per_10k_events": result.alerts_per_10k,
        "alerts_on_fraud": result.alerts_on_fraud,
        "alerts_on_lookalikes": result.alerts_on_lookalikes,
        "shadow_alerts": result.shadow_alerts,
        "active_entities": result.active_entities,
        "frozen_share": result.frozen_share,
        "alerted_share": result.alerted_share,
        "rules": rule_scores_json(result.rules),
        "acceptable": result.acceptable(),
    }
