"""Parsing one rule (its metric, action and requirements) from a rule file's
data, recording every mistake with its path. `detectors.rulebook` owns the
file-level format and the public API; each metric kind parses its own
section (`detectors.metric_kinds`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from detectors import rule_money
from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.events import Topic
from detectors.health_model import Band
from detectors.list_names import ListName
from detectors.money import PerCurrency
from detectors.rule_syntax import Parser, windowed_aggregate
from detectors.rules import (
    BENEFIT_SCOPES,
    FUND_SCOPES,
    Action,
    ActionKind,
    AgeRequirement,
    Comparison,
    CountRequirement,
    Evaluator,
    Guardrail,
    Metric,
    Mode,
    Requirement,
    Rule,
    Severity,
)
from detectors.rules_conditions import Condition
from detectors.rules_entities import EntityType
from detectors.rules_lists import RULE_LISTS, ListCondition, listable

__all__ = ["metric_keywords", "parse_rule"]

RULE_KEYS = {
    "id",
    "version",
    "description",
    "triggers",
    "entity",
    "metric",
    "compare",
    "threshold",
    "min_volume",
    "where",
    "requires",
    "severity",
    "action",
    "mode",
    "cooldown",
    "guardrail",
}
REQUIRED_RULE_KEYS = (
    "id",
    "version",
    "triggers",
    "entity",
    "metric",
    "compare",
    "threshold",
    "severity",
)
MAX_VERSION = 1_000_000_000
REQUIRE_KEYS = {"age_of", "op", "value", "retain"}
COUNT_REQUIRE_METRIC_KEYS = {"kind", "field", "topics", "window", "resolution", "where"}
GUARDRAIL_KEYS = {"freeze_budget_10m"}
MAX_FREEZE_BUDGET = 1_000_000


def metric_keywords(kinds: Mapping[str, Evaluator]) -> dict[str, Evaluator]:
    """Each `kind:` name a metric section may use → the evaluator of its kind.
    Two kinds claiming one name is a programming error, not a rule mistake."""
    out: dict[str, Evaluator] = {}
    for evaluator in kinds.values():
        for keyword in evaluator.keywords:
            if keyword in out:
                raise ValueError(
                    f"metric kinds {out[keyword].kind} and {evaluator.kind} both parse {keyword!r}"
                )
            out[keyword] = evaluator
    return out


def _metric(
    p: Parser,
    raw: Any,
    entity: tuple[EntityType, ...],
    path: str,
    keywords: Mapping[str, Evaluator],
) -> Metric:
    if not isinstance(raw, dict):
        raise p.fail(path, "expected a mapping with `kind`")
    known = set().union(*(e.keywords[k] for k, e in keywords.items()))
    unknown = {str(k) for k in raw} - known
    if unknown:
        raise p.fail(path, f"unknown key(s): {', '.join(sorted(unknown))}")
    kind = p.get(raw, "kind", path, str)
    evaluator = keywords.get(kind)
    if evaluator is None:
        raise p.fail(f"{path}.kind", f"{kind!r} is not one of {', '.join(keywords)}")
    extra = {str(k) for k in raw} - evaluator.keywords[kind]
    if extra:
        raise p.fail(path, f"{kind} does not take: {', '.join(sorted(extra))}")
    return evaluator.parse(p, raw, entity, path)


def _action(p: Parser, raw: Any, path: str) -> Action:
    if raw == "alert" or raw is None:
        return Action()
    if not isinstance(raw, dict):
        raise p.fail(path, "expected `alert` or {type, scope, duration}")
    kinds = [k.value for k in ActionKind]
    kind = p.enum(ActionKind, p.get(raw, "type", path, str), f"{path}.type", kinds)
    if kind is ActionKind.ALERT:
        return Action()
    scopes = BENEFIT_SCOPES if kind is ActionKind.BENEFIT_FREEZE else FUND_SCOPES
    scope = p.get(raw, "scope", path, str)
    if scope not in scopes:
        raise p.fail(f"{path}.scope", f"{scope!r} is not one of {', '.join(scopes)}")
    duration = p.duration(p.get(raw, "duration", path, str), f"{path}.duration")
    return Action(kind, scope, duration)


def _requires(
    p: Parser, raw: Any, entity: tuple[EntityType, ...], path: str
) -> tuple[tuple[Requirement, ...], tuple[str, ...]]:
    """The requirements on aggregates, and the health bands the merchant
    may be in. One requirement may stand alone (`requires: {health_band:
    critical}`)."""
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise p.fail(
            path, "expected a list of {age_of, op, value}, {metric, op, value} or {health_band}"
        )
    out: list[Requirement] = []
    bands: list[str] = []
    for i, item in enumerate(items):
        q = path if items is not raw else f"{path}[{i}]"
        if isinstance(item, dict) and "health_band" in item:
            bands += _health_bands(p, item, q)
        elif isinstance(item, dict) and "metric" in item:
            out.append(_count_requirement(p, item, entity, q))
        else:
            out.append(_age_requirement(p, item, q))
    return tuple(out), tuple(bands)


def _health_bands(p: Parser, item: dict[str, Any], q: str) -> list[str]:
    """`{health_band: critical}` or `{health_band: [at_risk, critical]}`."""
    if set(item) != {"health_band"}:
        raise p.fail(q, "expected {health_band: BAND} or {health_band: [BAND, ...]}")
    raw = item["health_band"]
    names = raw if isinstance(raw, list) else [raw]
    known = [b.value for b in Band]
    if not names or not all(isinstance(n, str) and n in known for n in names):
        raise p.fail(f"{q}.health_band", f"expected one or more of {', '.join(known)}")
    return names


def _age_requirement(p: Parser, item: Any, q: str) -> AgeRequirement:
    if not isinstance(item, dict) or not {"age_of", "op", "value"} <= set(item) <= REQUIRE_KEYS:
        raise p.fail(
            q,
            "expected {age_of, op, value} and optionally `retain`, e.g. "
            "{age_of: merchant, op: '<', value: 30d}",
        )
    entity = p.entity(item["age_of"], f"{q}.age_of")
    comparison = p.enum(Comparison, item["op"], f"{q}.op", [c.value for c in Comparison])
    age = p.duration(item["value"], f"{q}.value")
    retain = p.duration(item["retain"], f"{q}.retain") if "retain" in item else None
    if retain is not None and (comparison in (Comparison.LT, Comparison.LE) or retain <= age):
        # Once a sighting is forgotten the entity looks new again: fine for
        # "older than" (it just stops firing), wrong for "younger than".
        raise p.fail(f"{q}.retain", "only for op >= or >, and longer than the age")
    first_seen = AggregateSpec(AggregateKind.FIRST_SEEN, frozenset(Topic), entity, window_ms=retain)
    return AgeRequirement(first_seen, comparison, age)


def _count_requirement(
    p: Parser, item: dict[str, Any], entity: tuple[EntityType, ...], q: str
) -> CountRequirement:
    """`{metric: {kind: distinct, field: user_id, topics: [...], window: 24h},
    op: ">=", value: 2}`: a count or distinct count of the rule's entity.
    Not a sum: money limits are per currency, and a requirement is evidence
    about who and how many, not how much."""
    if set(item) != {"metric", "op", "value"}:
        raise p.fail(q, "expected {metric, op, value}, e.g. {metric: {kind: distinct, ...}, ...}")
    raw = p.get(item, "metric", q, dict)
    unknown = {str(k) for k in raw} - COUNT_REQUIRE_METRIC_KEYS
    if unknown:
        raise p.fail(f"{q}.metric", f"unknown key(s): {', '.join(sorted(unknown))}")
    if raw.get("kind") not in (AggregateKind.COUNT.value, AggregateKind.DISTINCT.value):
        raise p.fail(f"{q}.metric.kind", "a requirement is a count or a distinct count")
    spec = windowed_aggregate(p, raw, entity, f"{q}.metric")
    comparison = p.enum(Comparison, item["op"], f"{q}.op", [c.value for c in Comparison])
    value = item["value"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise p.fail(f"{q}.value", "expected a whole number, 0 or more")
    return CountRequirement(spec, comparison, value)


def parse_rule(
    p: Parser,
    raw: Any,
    path: str,
    defaults: dict[str, Any],
    keywords: Mapping[str, Evaluator],
) -> Rule:
    """One rule; `keywords` (see `metric_keywords`) are the metric kinds it may use."""
    if not isinstance(raw, dict):
        raise p.fail(path, "expected a mapping")
    raw = {**defaults, **raw}
    unknown = {str(k) for k in raw} - RULE_KEYS
    if unknown:
        raise p.fail(path, f"unknown key(s): {', '.join(sorted(unknown))}")
    for key in REQUIRED_RULE_KEYS:
        p.get(raw, key, path, object)
    rule_id = p.get(raw, "id", path, str)
    if not rule_id.replace("_", "").replace("-", "").isalnum():
        raise p.fail(f"{path}.id", "use letters, digits, '_' and '-' only")
    version = p.get(raw, "version", path, int)
    if not 1 <= version <= MAX_VERSION:
        raise p.fail(f"{path}.version", f"must be between 1 and {MAX_VERSION}")
    topics = p.topics(raw["triggers"], f"{path}.triggers")
    entity = p.entity(raw["entity"], f"{path}.entity")
    metric = _metric(p, raw["metric"], entity, f"{path}.metric", keywords)
    comparison = p.enum(
        Comparison, raw["compare"], f"{path}.compare", [c.value for c in Comparison]
    )
    threshold, min_volume = _limits(p, raw, metric, comparison, path)
    where, lists = (
        _where(p, raw["where"], topics, entity, f"{path}.where") if "where" in raw else ((), ())
    )
    requires, bands = (
        _requires(p, raw["requires"], entity, f"{path}.requires") if "requires" in raw else ((), ())
    )
    return Rule(
        rule_id=rule_id,
        version=version,
        description=p.get(raw, "description", path, str, ""),
        topics=topics,
        entity=entity,
        metric=dataclasses.replace(metric, min_volume=min_volume),
        comparison=comparison,
        threshold=threshold,
        severity=p.enum(Severity, raw["severity"], f"{path}.severity", [s.value for s in Severity]),
        mode=p.enum(Mode, raw.get("mode", "enforce"), f"{path}.mode", [m.value for m in Mode]),
        action=_action(p, raw.get("action"), f"{path}.action"),
        cooldown_ms=p.duration(p.get(raw, "cooldown", path, str, "1h"), f"{path}.cooldown"),
        where=where,
        requires=requires,
        lists=lists,
        health_bands=frozenset(bands),
        guardrail=_guardrail(p, raw["guardrail"], f"{path}.guardrail")
        if "guardrail" in raw
        else Guardrail(),
    )


def _where(
    p: Parser, raw: Any, topics: frozenset[Topic], entity: tuple[EntityType, ...], path: str
) -> tuple[tuple[Condition, ...], tuple[ListCondition, ...]]:
    """A rule's conditions: on the event's fields, and `{list: watch}` on
    its entity. One condition may stand alone (`where: {list: watch}`)."""
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise p.fail(path, "expected a list of conditions ({field, op, value} or {list: watch})")
    fields: list[Condition] = []
    lists: list[ListCondition] = []
    for i, item in enumerate(items):
        q = path if items is not raw else f"{path}[{i}]"
        if isinstance(item, dict) and "list" in item:
            lists.append(_list_condition(p, item, entity, q))
        else:
            fields.append(p.condition(item, topics, q))
    return tuple(fields), tuple(lists)


def _list_condition(
    p: Parser, item: dict[str, Any], entity: tuple[EntityType, ...], path: str
) -> ListCondition:
    if set(item) != {"list"}:
        raise p.fail(path, "a list condition is {list: watch} alone")
    names = sorted(n.value for n in RULE_LISTS)
    name = item["list"]
    if name not in names:
        raise p.fail(f"{path}.list", f"{name!r} is not one of {', '.join(names)}")
    if not any(listable(e) for e in entity):
        raise p.fail(f"{path}.list", "the rule's entity cannot be on a list")
    return ListCondition(ListName(name))


def _guardrail(p: Parser, raw: Any, path: str) -> Guardrail:
    """`{freeze_budget_10m: N}`: the distinct entities the rule may freeze per
    10 minutes before the workers demote it to shadow."""
    if not isinstance(raw, dict):
        raise p.fail(path, "expected a mapping, e.g. {freeze_budget_10m: 20}")
    unknown = {str(k) for k in raw} - GUARDRAIL_KEYS
    if unknown:
        raise p.fail(path, f"unknown key(s): {', '.join(sorted(unknown))}")
    budget = p.get(raw, "freeze_budget_10m", path, int, None)
    if budget is not None and not 1 <= budget <= MAX_FREEZE_BUDGET:
        raise p.fail(f"{path}.freeze_budget_10m", f"must be between 1 and {MAX_FREEZE_BUDGET}")
    return Guardrail(budget)


def _limits(
    p: Parser, raw: dict[str, Any], metric: Metric, comparison: Comparison, path: str
) -> tuple[float | PerCurrency, int | PerCurrency]:
    """The threshold and min_volume, as the metric's kind reads them; a rule
    judges one set of currencies, so money limits must name the same."""
    evaluator = metric.evaluator
    threshold = evaluator.threshold(p, raw["threshold"], metric, comparison, f"{path}.threshold")
    min_volume: int | PerCurrency = 0
    if "min_volume" in raw:
        min_volume = evaluator.volume(p, raw["min_volume"], metric, f"{path}.min_volume")
    rule_money.same_currencies(p, threshold, min_volume, path)
    return threshold, min_volume
