"""Per-rule figures of `fraudstream score`: what each rule costs and earns on
labelled traffic, so a rule that freezes honest entities or floods risk ops
is named, not hidden in a total.

- precision: the rule's alerts and freezes that touch a fraud entity, over
  all of them (an alert on a compound key touches fraud when any part is);
- frozen, not fraud: distinct entities the rule froze outside every fraud
  scenario (look-alikes included: they are honest);
- alerted per 1,000 active: distinct entities the rule alerted on, per 1,000
  entities of that type seen in the events (the labels file counts them).
Shadow-mode alerts are left out: nobody acts on them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["RuleScore", "format_rule_scores", "rule_scores", "rule_scores_json"]

Entity = tuple[str, str]  # (entity type, id)


class ScoredDecision(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def subject(self) -> Entity: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def related(self) -> tuple[Entity, ...]: ...


@dataclass(frozen=True, slots=True)
class RuleScore:
    rule_id: str
    alerts: int
    freezes: int
    on_fraud: int
    frozen_not_fraud: int
    alerted_entities: int
    alerted_per_1k: float | None  # None: the labels do not count that entity type

    @property
    def precision(self) -> float:
        decided = self.alerts + self.freezes
        return self.on_fraud / decided if decided else 1.0


def rule_scores(
    decisions: Sequence[ScoredDecision],
    fraud: set[Entity],
    active: Mapping[str, int],
) -> tuple[RuleScore, ...]:
    """One row per rule that decided anything, by rule id."""
    by_rule: dict[str, list[ScoredDecision]] = defaultdict(list)
    for d in decisions:
        if d.mode != "shadow" or d.kind != "alert":
            by_rule[d.rule_id].append(d)
    return tuple(_row(rule_id, by_rule[rule_id], fraud, active) for rule_id in sorted(by_rule))


def _row(
    rule_id: str, mine: list[ScoredDecision], fraud: set[Entity], active: Mapping[str, int]
) -> RuleScore:
    alerts = [d for d in mine if d.kind == "alert"]
    freezes = [d for d in mine if d.kind != "alert"]
    alerted = {d.subject for d in alerts}
    kinds = {t for t, _ in alerted}
    per_1k = None
    if alerted and len(kinds) == 1 and active.get(next(iter(kinds))):
        per_1k = 1000 * len(alerted) / active[next(iter(kinds))]
    elif not alerted:
        per_1k = 0.0
    return RuleScore(
        rule_id=rule_id,
        alerts=len(alerts),
        freezes=len(freezes),
        on_fraud=sum(1 for d in mine if d.subject in fraud or set(d.related) & fraud),
        frozen_not_fraud=len({d.subject for d in freezes} - fraud),
        alerted_entities=len(alerted),
        alerted_per_1k=per_1k,
    )


def format_rule_scores(rows: Sequence[RuleScore]) -> str:
    head = (
        f"{'rule':<44} {'alerts':>6} {'freezes':>7} {'precision':>9} "
        f"{'frozen, not fraud':>17} {'alerted per 1k active':>21}"
    )
    lines = [head]
    for r in rows:
        rate = "-" if r.alerted_per_1k is None else f"{r.alerted_per_1k:.2f}"
        lines.append(
            f"{r.rule_id:<44} {r.alerts:>6} {r.freezes:>7} {r.precision:>9.3f} "
            f"{r.frozen_not_fraud:>17} {rate:>21}"
        )
    return "\n".join(lines)


def rule_scores_json(rows: Sequence[RuleScore]) -> dict[str, dict[str, Any]]:
    return {
        r.rule_id: {
            "alerts": r.alerts,
            "freezes": r.freezes,
            "precision": r.precision,
            "frozen_not_fraud": r.frozen_not_fraud,
            "alerted_entities": r.alerted_entities,
            "alerted_per_1k_active": r.alerted_per_1k,
        }
        for r in rows
    }
