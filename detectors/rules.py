"""Rule specifications: detection policy as data.

A spec is a frozen value; evaluating it is the job of the rule-family module
(e.g. `detectors.velocity`). Specs carry their own id and version so every
decision names exactly which policy produced it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from detectors.errors import ConfigError


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Mode(StrEnum):
    """`shadow` rules are evaluated and alert (marked shadow) but never enforce."""

    ENFORCE = "enforce"
    SHADOW = "shadow"


class EntityType(StrEnum):
    USER = "user"
    MERCHANT = "merchant"
    DEVICE = "device"
    PAYMENT = "payment"
    IP = "ip"
    VOUCHER = "voucher"
    CAMPAIGN = "campaign"


@dataclass(frozen=True, slots=True)
class VelocityRule:
    """Fires when some event-time window of `window_ms` holds >= `threshold` events
    of one entity. One alert per incident: further crossings within
    `cooldown_ms` (event time) of the incident's last window belong to it."""

    rule_id: str
    version: int
    entity_type: EntityType
    window_ms: int
    threshold: int
    severity: Severity
    mode: Mode
    cooldown_ms: int
    description: str = ""

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ConfigError(f"{self.rule_id}.window", "must be positive")
        if self.threshold < 1:
            raise ConfigError(f"{self.rule_id}.threshold", "must be at least 1")
        if self.cooldown_ms < 0:
            raise ConfigError(f"{self.rule_id}.cooldown", "must not be negative")
        if self.version < 1:
            raise ConfigError(f"{self.rule_id}.version", "must be at least 1")
