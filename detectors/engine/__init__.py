"""The pure decision engine: which aggregates an event feeds or needs
(`planning`), and what the rules decide once the store has answered
(`evaluation`).

No I/O and no clock here: the store's answers and the current time come in
as arguments, so the live worker and the backtest run exactly this code.
"""

from detectors.aggregates import Observation
from detectors.engine.evaluation import evaluate
from detectors.engine.planning import (
    AggregateRequest,
    EntityGroup,
    GroupRequest,
    Plan,
    group_requests,
)

__all__ = [
    "AggregateRequest",
    "EntityGroup",
    "GroupRequest",
    "Observation",
    "Plan",
    "evaluate",
    "group_requests",
]
