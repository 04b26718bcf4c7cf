"""The labels file: which scenarios a simulated stream contains, which
entities are the fraud, and what the rules are expected to do about it.

This module is the schema. The simulator writes it (`Labels.to_json`), the
scorer reads it (`load_labels`), and both get the same frozen dataclasses,
so a field cannot mean one thing on one side and another on the other.

Entity types are the rule engine's (`detectors.rules_entities.EntityType`):
a `payment` is a buyer's payment fingerprint or a payout destination.
`entities` lists every entity that *is* the fraud (alerts and freezes on
them are correct); `expect_on` where the expected action must land.
Look-alikes are legitimate: their entities must not be frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from detectors.events import Topic
from detectors.health_model import Band
from detectors.rules_entities import EntityType
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms

__all__ = [
    "Archetype",
    "EntityRef",
    "ExpectedAction",
    "Family",
    "Labels",
    "LabelsError",
    "MerchantLabel",
    "ScenarioLabel",
    "ScenarioName",
    "load_labels",
    "write_labels",
]


class Family(StrEnum):
    VELOCITY = "velocity"
    VOUCHER_ABUSE = "voucher_abuse"
    COLLUSION = "collusion"
    REFUND_ABUSE = "refund_abuse"
    PAYOUT_RISK = "payout_risk"
    BUST_OUT = "bust_out"
    YOUNG_BUST_OUT = "young_bust_out"
    BRUSHING = "brushing"
    LOOKALIKE = "lookalike"


class ExpectedAction(StrEnum):
    NONE = "none"
    ALERT = "alert"
    BENEFIT_FREEZE = "benefit_freeze"
    FUND_FREEZE = "fund_freeze"


class ScenarioName(StrEnum):
    CARD_TESTING_BURST = "card_testing_burst"
    SHARED_CARD_ACCOUNTS = "shared_card_accounts"
    BOT_IP_BURST = "bot_ip_burst"
    DEVICE_FARM = "device_farm"
    CAMPAIGN_LEAK = "campaign_leak"
    CAMPAIGN_REPEAT_REDEEMER = "campaign_repeat_redeemer"
    COLLUSION_PAIR = "collusion_pair"
    SELF_DEALING = "self_dealing"
    DEVICE_HOPPING = "device_hopping"
    SERIAL_REFUNDER = "serial_refunder"
    REFUND_AFTER_SETTLEMENT = "refund_after_settlement"
    REFUND_RING = "refund_ring"
    MERCHANT_REFUND_SPIKE = "merchant_refund_spike"
    ACCOUNT_TAKEOVER = "account_takeover"
    PAYOUT_DRAIN = "payout_drain"
    BUST_OUT = "bust_out"
    YOUNG_BUST_OUT = "young_bust_out"
    BRUSHING = "brushing"
    HOLIDAY_RUSH = "holiday_rush"
    FAMILY_TABLET = "family_tablet"
    OFFICE_LUNCH = "office_lunch"
    REGULAR_CUSTOMER = "regular_customer"
    BANK_ACCOUNT_CHANGE = "bank_account_change"
    CHAIN_STORES = "chain_stores"
    DEAL_HUNTER = "deal_hunter"
    GRAND_OPENING = "grand_opening"
    CATERING_BURST = "catering_burst"
    HOUSEHOLD_REFUND = "household_refund"
    FIRST_WEEKLY_PAYOUT = "first_weekly_payout"


class Archetype(StrEnum):
    GOOD = "good"
    SLOPPY = "sloppy"
    DETERIORATING = "deteriorating"
    FRAUDULENT = "fraudulent"


@dataclass(frozen=True, slots=True)
class MerchantLabel:
    merchant_id: str
    archetype: Archetype
    expected_band: Band
    judged_at_ms: int  # the band is read from the last snapshot at or before this time
    fraud_start_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "merchant_id": self.merchant_id,
            "archetype": self.archetype.value,
            "expected_band": self.expected_band.value,
            "judged_at": format_rfc3339_ms(self.judged_at_ms),
        }
        if self.fraud_start_ms is not None:
            doc["fraud_start"] = format_rfc3339_ms(self.fraud_start_ms)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> MerchantLabel:
        start = doc.get("fraud_start")
        return cls(
            str(doc["merchant_id"]),
            Archetype(doc["archetype"]),
            Band(doc["expected_band"]),
            parse_rfc3339_ms(doc["judged_at"]),
            parse_rfc3339_ms(start) if start else None,
        )


class LabelsError(ValueError):
    """A labels document that does not follow this schema."""


@dataclass(frozen=True, slots=True, order=True)
class EntityRef:
    type: EntityType
    id: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type.value, "id": self.id}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EntityRef:
        return cls(EntityType(doc["type"]), str(doc["id"]))


@dataclass(frozen=True, slots=True)
class ScenarioLabel:
    scenario_id: str  # "<scenario>-<instance>", unique in the file
    scenario: ScenarioName
    family: Family
    fraud: bool
    expected_action: ExpectedAction
    entities: tuple[EntityRef, ...]
    expect_on: tuple[EntityRef, ...]
    start_ms: int  # event time of the scenario's first and last telling event
    end_ms: int
    description: str
    lookalike_of: ScenarioName | None = None  # set for look-alikes only

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "scenario_id": self.scenario_id,
            "scenario": self.scenario.value,
            "family": self.family.value,
        }
        if self.lookalike_of is not None:
            doc["lookalike_of"] = self.lookalike_of.value
        doc |= {
            "fraud": self.fraud,
            "expected_action": self.expected_action.value,
            "entities": [e.to_json() for e in self.entities],
            "expect_on": [e.to_json() for e in self.expect_on],
            "start": format_rfc3339_ms(self.start_ms),
            "end": format_rfc3339_ms(self.end_ms),
            "description": self.description,
        }
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ScenarioLabel:
        lookalike_of = doc.get("lookalike_of")
        return cls(
            scenario_id=str(doc["scenario_id"]),
            scenario=ScenarioName(doc["scenario"]),
            family=Family(doc["family"]),
            fraud=bool(doc["fraud"]),
            expected_action=ExpectedAction(doc["expected_action"]),
            entities=tuple(EntityRef.from_json(e) for e in doc["entities"]),
            expect_on=tuple(EntityRef.from_json(e) for e in doc["expect_on"]),
            start_ms=parse_rfc3339_ms(doc["start"]),
            end_ms=parse_rfc3339_ms(doc["end"]),
            description=str(doc.get("description", "")),
            lookalike_of=ScenarioName(lookalike_of) if lookalike_of else None,
        )


@dataclass(frozen=True, slots=True)
class Labels:
    seed: int
    scale: float
    start_ms: int
    days: int
    events: int
    events_by_topic: Mapping[Topic, int]
    scenarios: tuple[ScenarioLabel, ...]
    # Distinct entities of each type in the events: what alert and freeze
    # rates are per ("frozen: 0.1 % of active devices"). Empty in files
    # written before it existed.
    active_entities: Mapping[EntityType, int] = field(default_factory=dict)
    # Merchants of the health archetypes (fraudstream simulate --merchants N).
    merchants: tuple[MerchantLabel, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "scale": float(self.scale),
            "start": format_rfc3339_ms(self.start_ms),
            "days": self.days,
            "events": self.events,
            "events_by_topic": {t.value: n for t, n in self.events_by_topic.items()},
            "active_entities": {t.value: n for t, n in self.active_entities.items()},
            "merchants": [m.to_json() for m in self.merchants],
            "scenarios": [s.to_json() for s in self.scenarios],
        }

    def dumps(self) -> bytes:
        return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2) + b"\n"

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Labels:
        return cls(
            seed=int(doc["seed"]),
            scale=float(doc["scale"]),
            start_ms=parse_rfc3339_ms(doc["start"]),
            days=int(doc["days"]),
            events=int(doc["events"]),
            events_by_topic={Topic(k): int(v) for k, v in doc["events_by_topic"].items()},
            scenarios=tuple(ScenarioLabel.from_json(s) for s in doc["scenarios"]),
            active_entities={
                EntityType(k): int(v) for k, v in doc.get("active_entities", {}).items()
            },
            merchants=tuple(MerchantLabel.from_json(m) for m in doc.get("merchants", [])),
        )

    def fraud(self) -> tuple[ScenarioLabel, ...]:
        return tuple(s for s in self.scenarios if s.fraud)

    def lookalikes(self) -> tuple[ScenarioLabel, ...]:
        return tuple(s for s in self.scenarios if not s.fraud)


def load_labels(path: Path | str) -> Labels:
    """Read a labels file written by `fraudstream simulate --labels`."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
        return Labels.from_json(doc)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise LabelsError(f"{path}: not a simulation labels file: {exc!r}") from exc


def write_labels(labels: Labels, path: Path | str) -> None:
    Path(path).write_bytes(labels.dumps())
