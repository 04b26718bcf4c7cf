"""Labelled marketplace traffic for tuning and scoring the rules.

`simulate(SimulationConfig(...))` generates days of ordinary orders, voucher
redemptions, refunds and payouts with fraud scenarios and legitimate
look-alikes injected, every event in the input contract, plus labels saying
which entities are the fraud (`stream.simulation.labels`). The same config
always gives the same bytes. `fraudstream simulate` is the command.
"""

from stream.simulation.generator import SimulationResult, contract_value, simulate
from stream.simulation.labels import Labels, ScenarioLabel, load_labels
from stream.simulation.model import SimulationConfig

__all__ = [
    "Labels",
    "ScenarioLabel",
    "SimulationConfig",
    "SimulationResult",
    "contract_value",
    "load_labels",
    "simulate",
]
