"""What a worker tells Prometheus about its rule set: which one it judges by
(`fraud_ruleset_info`, one series per worker, so workers disagreeing show as
several `ruleset_version`s at once) and whether the latest published one was
refused (`fraud_ruleset_refused`; the refusal itself is also counted in
`fraud_control_records_rejected_total{kind="ruleset"}`)."""

from __future__ import annotations

import logging

from detectors.control import ControlKind
from stream.active_rules import ActiveRules
from stream.control_follower import Rejected
from stream.metrics import Metrics

__all__ = ["RulesetStatus"]

log = logging.getLogger(__name__)
RULESET_KEY = ControlKind.RULESET.value


class RulesetStatus:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._shown: ActiveRules | None = None

    def in_effect(self, rules: ActiveRules) -> None:
        """Export `rules` as this worker's rule set (the old series removed)."""
        if rules is self._shown:
            return
        m, book = self._metrics, rules.rulebook
        m.ruleset_info.clear()
        m.ruleset_info.labels(rules.version, book.name, rules.source.value).set(1)
        m.rules_loaded.clear()
        m.rules_loaded.labels(book.name, book.version).set(len(book.rules))
        log.info(
            "rule set %s %s in effect (ruleset_version %s, %d rules, from %s)",
            book.name,
            book.version,
            rules.version,
            len(book.rules),
            rules.source.origin,
        )
        self._shown = rules

    def accepted(self, key: str) -> None:
        """A record was folded (called in topic order with `refused`)."""
        if key == RULESET_KEY:
            self._metrics.ruleset_refused.set(0)

    def refused(self, item: Rejected) -> None:
        if item.key == RULESET_KEY:
            self._metrics.ruleset_refused.set(1)
