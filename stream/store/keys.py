"""The Redis key schema, in one place.

Every key of one entity shares the hash tag `{<entity-type-code>:<id>}`, so one
atomic script per entity group works on Redis Cluster (no CROSSSLOT). The
namespace prefix sits outside the tag: a backtest's scratch namespace lands
on the same slots as the live one, and can be removed with one SCAN pattern.

    <ns>:{u:<user_id>}:log:<log_name>      ZSET  member=event_id score=event_ms
    <ns>:{u:<user_id>}:inc:<rule_id>       HASH  open incident of a rule (until, alert_id, ...)
"""

from __future__ import annotations

from detectors.rules import EntityType

ENTITY_CODE: dict[EntityType, str] = {
    EntityType.USER: "u",
    EntityType.MERCHANT: "m",
    EntityType.DEVICE: "d",
    EntityType.PAYMENT: "p",
    EntityType.IP: "ip",
    EntityType.VOUCHER: "v",
    EntityType.CAMPAIGN: "c",
}


def entity_tag(entity_type: EntityType, entity_id: str) -> str:
    return f"{{{ENTITY_CODE[entity_type]}:{entity_id}}}"


def event_log(ns: str, entity_type: EntityType, entity_id: str, log_name: str) -> str:
    return f"{ns}:{entity_tag(entity_type, entity_id)}:log:{log_name}"


def incident(ns: str, entity_type: EntityType, entity_id: str, rule_id: str) -> str:
    return f"{ns}:{entity_tag(entity_type, entity_id)}:inc:{rule_id}"


def namespace_pattern(ns: str) -> str:
    """SCAN pattern matching every key of a namespace."""
    return f"{ns}:*"
