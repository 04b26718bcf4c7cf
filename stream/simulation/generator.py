"""One simulation run: population, background traffic, the scenario
catalogue, daily payouts, then every event in event-time order with its
labels.

The order of the steps matters: background refunds are drawn before the
scenarios (so scenarios see who already had a refund), and payouts come last
(so they pay what every order and refund, injected or not, really earned).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import orjson

from detectors.contract import FIELDS, FieldKind
from detectors.events import Event, Topic
from detectors.rules_entities import EntityType, entity_value
from detectors.timestamps import format_rfc3339_ms
from stream.simulation.background import background_orders, organic_refunds
from stream.simulation.catalogue import run_catalogue
from stream.simulation.labels import Labels
from stream.simulation.ledger import Ledger
from stream.simulation.merchant_quality import run_merchants
from stream.simulation.model import IdMint, SimulationConfig
from stream.simulation.population import build_population
from stream.simulation.world import World

__all__ = [
    "RATED_ENTITIES",
    "SimulationResult",
    "TimedEvent",
    "active_entities",
    "contract_value",
    "simulate",
]

TimedEvent = tuple[Topic, Event]


def contract_value(topic: Topic, event: Event) -> dict[str, object]:
    """The event as its topic's JSON object: exactly the contract's fields, in
    the contract's order, optional fields left out when absent."""
    value: dict[str, object] = {}
    for spec in FIELDS[topic]:
        if spec.kind is FieldKind.TIMESTAMP:
            value[spec.name] = format_rfc3339_ms(event.occurred_at_ms)
            continue
        field = getattr(event, spec.name)
        if field is not None:
            value[spec.name] = field.value if isinstance(field, Enum) else field
    return value


@dataclass(frozen=True, slots=True)
class SimulationResult:
    timeline: tuple[TimedEvent, ...]  # sorted by event time, stable
    labels: Labels

    def jsonl(self) -> bytes:
        """One `{"topic": ..., "value": {...}}` line per event (backtest's input format)."""
        return b"".join(
            orjson.dumps({"topic": topic.value, "value": contract_value(topic, event)}) + b"\n"
            for topic, event in self.timeline
        )

    def summary(self) -> str:
        labels = self.labels
        per_topic = ", ".join(f"{t.value} {n}" for t, n in labels.events_by_topic.items())
        fraud = len(labels.fraud())
        return (
            f"simulated {labels.events} events ({per_topic}) over {labels.days} days from "
            f"{format_rfc3339_ms(labels.start_ms)}, seed {labels.seed}, scale {labels.scale:g}; "
            f"{len(labels.scenarios)} scenarios ({fraud} fraud, "
            f"{len(labels.scenarios) - fraud} look-alike)"
        )


def simulate(cfg: SimulationConfig) -> SimulationResult:
    ids = IdMint(cfg.rng("ids"))
    ledger = Ledger(cfg, ids)
    population = build_population(cfg, ids, ledger, cfg.rng("population"))
    world = World(cfg, ids, ledger, population)
    rng = cfg.rng("background")
    organic_refunds(world, rng, background_orders(world, rng))
    scenarios = run_catalogue(world)
    merchants = run_merchants(world, cfg.merchants)
    ledger.pay_daily(cfg.rng("payouts"))
    timeline = _in_time_order(ledger.events)
    labels = Labels(
        seed=cfg.seed,
        scale=cfg.scale,
        start_ms=cfg.start_ms,
        days=cfg.days,
        events=len(timeline),
        events_by_topic=ledger.count_by_topic(),
        scenarios=tuple(scenarios),
        active_entities=active_entities(timeline),
        merchants=tuple(merchants),
    )
    return SimulationResult(timeline, labels)


# The entity types rules key on and scores are rated by (vouchers and orders
# are one-off ids, not accounts anyone freezes).
RATED_ENTITIES = (
    EntityType.USER,
    EntityType.MERCHANT,
    EntityType.DEVICE,
    EntityType.PAYMENT,
    EntityType.IP,
    EntityType.CAMPAIGN,
)


def active_entities(timeline: Sequence[TimedEvent]) -> dict[EntityType, int]:
    """Distinct ids of each rated entity type over the run's events."""
    seen: dict[EntityType, set[str]] = {t: set() for t in RATED_ENTITIES}
    for _, event in timeline:
        for kind, ids in seen.items():
            value = entity_value(event, kind)
            if value is not None:
                ids.add(value)
    return {kind: len(ids) for kind, ids in seen.items()}


def _in_time_order(events: Sequence[TimedEvent]) -> tuple[TimedEvent, ...]:
    # sorted() is stable: events at the same millisecond keep generation order
    # (an order before its own redemption or refund).
    return tuple(sorted(events, key=lambda pair: pair[1].occurred_at_ms))
