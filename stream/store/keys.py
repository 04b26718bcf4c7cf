"""The Redis key schema, in one place.

Every key of one entity shares the hash tag `{<codes>:<ids>}`, so one atomic
script per entity works on Redis Cluster (no CROSSSLOT). Compound entities
(merchant x user) get their own tag. The namespace prefix sits outside the
tag: a backtest's scratch namespace uses the same slots and can be removed
with one SCAN pattern.

    <ns>:{u:<id>}:seen              ZSET  duplicate guard: member=event hash, score=event ms
    <ns>:{u:<id>}:a:<agg_id>        HASH  bucketed count/sum: n = newest bucket,
                                          t = window total, <bucket> = value
                                    ZSET  distinct: member=value, score=last event ms
    <ns>:{u:<id>}:first             HASH  <agg_id> = first event ms seen
    <ns>:{o:<id>}:first:<ms>        HASH  the same, for sightings kept only <ms> (`retain`)
    <ns>:{u:<id>}:inc:<rule_id>     HASH  recent incidents of a rule (see claim_incidents.lua)
    <ns>:store-epoch                STRING random id set once; its loss means Redis lost state
"""

from __future__ import annotations

from collections.abc import Sequence

from detectors.rules_entities import EntityType

ENTITY_CODE: dict[EntityType, str] = {
    EntityType.USER: "u",
    EntityType.MERCHANT: "m",
    EntityType.DEVICE: "d",
    EntityType.PAYMENT: "p",
    EntityType.IP: "ip",
    EntityType.VOUCHER: "v",
    EntityType.CAMPAIGN: "c",
    EntityType.ORDER: "o",
}


def entity_tag(entity: Sequence[EntityType], ids: Sequence[str]) -> str:
    """`{u:alice}`; compound ids are length-prefixed so no id can fake another."""
    codes = "+".join(ENTITY_CODE[e] for e in entity)
    body = ids[0] if len(ids) == 1 else "|".join(f"{len(i)}.{i}" for i in ids)
    return f"{{{codes}:{body}}}"


def entity_prefix(ns: str, tag: str) -> str:
    """What every key of one entity starts with; the store builds keys as
    prefix + suffix, once per entity and batch rather than per op."""
    return f"{ns}:{tag}"


GUARD_SUFFIX = ":seen"
FIRST_SEEN_SUFFIX = ":first"


def first_seen_suffix(retain_ms: int | None) -> str:
    """Sightings kept for the default time share `:first`; a shorter `retain`
    gets its own key, because a key has one TTL."""
    return FIRST_SEEN_SUFFIX if retain_ms is None else f"{FIRST_SEEN_SUFFIX}:{retain_ms}"


def aggregate_suffix(agg_id: str) -> str:
    return f":a:{agg_id}"


def guard(ns: str, tag: str) -> str:
    return entity_prefix(ns, tag) + GUARD_SUFFIX


def aggregate(ns: str, tag: str, agg_id: str) -> str:
    return entity_prefix(ns, tag) + aggregate_suffix(agg_id)


def first_seen(ns: str, tag: str) -> str:
    return entity_prefix(ns, tag) + FIRST_SEEN_SUFFIX


def incident(ns: str, tag: str, rule_id: str) -> str:
    return f"{ns}:{tag}:inc:{rule_id}"


def epoch(ns: str) -> str:
    """Sentinel written when a namespace starts holding state: if it vanishes,
    Redis lost its data (restart without persistence, flush, failover)."""
    return f"{ns}:store-epoch"


def namespace_pattern(ns: str) -> str:
    """SCAN pattern matching every key of a namespace."""
    return f"{ns}:*"
