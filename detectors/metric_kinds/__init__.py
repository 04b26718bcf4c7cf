"""Metric kinds: one module per kind, each an Evaluator
(`detectors.rules.Evaluator`), and the registry the rule parser reads them
from.

To add a kind computed from the aggregate kinds the store already keeps
(count, sum, distinct, first_seen):

1. a module here with its evaluator: how a rule file writes it (`keywords`,
   `parse`, which puts every aggregate it reads into the Metric), its limits
   (`threshold`, `volume`) and its value (`value`, `span`).
   `base.WindowedKind` holds the defaults most kinds share;
2. its entry in REGISTRY below, and its member in `detectors.rules.MetricKind`
   (tests/unit/test_metric_registry.py checks that the two agree).

Nothing else: the parser finds the kind by its keywords, the plan asks the
store for the aggregates its Metric holds, and the engine calls its
evaluator, which the parsed rule carries. A rule file parsed with another
registry (`parse_rulebook(text, kinds=...)`) may use kinds that are not
shipped, which is how a test adds one. Only a kind needing a new aggregate
kind also touches `detectors.aggregates` and the store.
"""

from collections.abc import Mapping
from types import MappingProxyType

from detectors.metric_kinds import age, balance, ratio, surge, value
from detectors.rules import Evaluator, MetricKind

__all__ = ["REGISTRY"]

# Read-only: a parse with more kinds passes its own mapping, e.g.
# {**REGISTRY, "toy": TOY}. The order is the order rule-file errors list
# the kinds in.
REGISTRY: Mapping[str, Evaluator] = MappingProxyType(
    {
        MetricKind.VALUE: value.EVALUATOR,
        MetricKind.RATIO: ratio.EVALUATOR,
        MetricKind.BALANCE: balance.EVALUATOR,
        MetricKind.SURGE: surge.EVALUATOR,
        MetricKind.AGE: age.EVALUATOR,
    }
)
