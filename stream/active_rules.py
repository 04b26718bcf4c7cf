"""Which rules a batch is judged by: the `ruleset` record of the control
snapshot when there is one, else the worker's rules file.

Swapping rules between batches must be atomic: the plan (which aggregates
an event feeds and reads, which rules judge it) and the rules judging the
store's answers must come from the same rule set, or a new rule would be
judged on aggregates nobody asked the store for. So everything derived from
a rule book lives in one immutable `ActiveRules`, replaced as a whole; a
batch takes one at `prepare` and keeps it to `conclude` (stream.pipeline's
Prepared carries it), also when the backtest prepares batch k+1 while k is
still being concluded.

The store needs nothing up front: every request carries its aggregate
specs, and the store learns a new spec the first time it sees one (its
state starts empty then: a new rule counts from the swap on). Aggregates and
incidents only a removed rule used are no longer read or written and expire
by their TTLs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from detectors import engine
from detectors.control import Ruleset
from detectors.control_snapshot import ControlSnapshot
from detectors.events import Topic
from detectors.health_rates import health_aggregates
from detectors.paid_out import needs_paid_out
from detectors.rulebook import Rulebook

__all__ = ["ActiveRules", "RulesSelector", "RulesSource"]


class RulesSource(StrEnum):
    FILE = "file"  # FRAUD_RULES_FILE, or the built-in default
    CONTROL = "control"  # a `ruleset` record on risk-control

    @property
    def origin(self) -> str:
        return "the rules file" if self is RulesSource.FILE else "a ruleset record"


@dataclass(frozen=True, slots=True)
class ActiveRules:
    rulebook: Rulebook
    source: RulesSource
    plan: engine.Plan
    # The topics whose events feed what each rule reads.
    reads: Mapping[str, frozenset[Topic]]
    # Whether a rule reads whether refunds were paid out (detectors.paid_out):
    # only then does a batch consult the store's payout book.
    paid_out: bool = False
    # The topics judged by a rule gated on a health band (detectors.health_bands):
    # only their events' merchants have their band history read.
    bands_read: frozenset[Topic] = frozenset()

    @property
    def version(self) -> str:
        """The `ruleset_version` decisions carry."""
        return self.rulebook.digest

    @classmethod
    def build(cls, rulebook: Rulebook, source: RulesSource) -> ActiveRules:
        reads = {
            r.rule_id: frozenset(t for spec in r.aggregates() for t in spec.topics)
            for r in rulebook.rules
        }
        model = rulebook.health
        health = health_aggregates(model) if model is not None else None
        plan = engine.Plan(rulebook, health.reads() if health is not None else None)
        extra = health.specs() if health is not None else ()
        paid_out = needs_paid_out(rulebook.rules, extra)
        # Without a health model no band exists (the rule book refuses that).
        bands = frozenset(
            t for r in rulebook.rules if r.health_bands and model is not None for t in r.topics
        )
        return cls(rulebook, source, plan, reads, paid_out, bands)


class RulesSelector:
    """The rules in effect under a snapshot. The record's rule book was parsed
    once, when the record was read (detectors.control); its plan is built
    once here, on the first batch under it, and kept while the snapshot's
    record is the same object (a snapshot changed for anything else keeps
    the record object), so a batch pays one identity check."""

    def __init__(
        self, rulebook: Rulebook, on_change: Callable[[ActiveRules], None] | None = None
    ) -> None:
        """`on_change`: told of each rule set taking over (not of the first)."""
        self.file = ActiveRules.build(rulebook, RulesSource.FILE)
        self._record: Ruleset | None = None
        self._published = self.file
        self._last = self.file
        self._on_change = on_change

    def under(self, snapshot: ControlSnapshot) -> ActiveRules:
        record = snapshot.ruleset
        if record is None:
            rules = self.file
        else:
            if record is not self._record:
                self._published = ActiveRules.build(record.rulebook, RulesSource.CONTROL)
                self._record = record
            rules = self._published
        if rules is not self._last:
            self._last = rules
            if self._on_change is not None:
                self._on_change(rules)
        return rules
