"""Parsing one rule (its metric, action and requirements) from a rule file's
data, recording every mistake with its path. `detectors.rulebook` owns the
file-level format and the public API."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors import rule_money
from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.durations import parse_duration_ms
from detectors.events import EVENT_CLASS, Topic
from detectors.money import PerCurrency
from detectors.rules import (
    BENEFIT_SCOPES,
    FUND_SCOPES,
    Action,
    ActionKind,
    AgeRequirement,
    Comparison,
    Metric,
    MetricKind,
    Mode,
    Rule,
    Severity,
)
from detectors.rules_conditions import Condition, Op
from detectors.rules_entities import EntityType
from detectors.windows import default_bucket_ms

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
METRIC_KEYS = {
    "kind",
    "topics",
    "field",
    "window",
    "resolution",
    "where",
    "numerator",
    "denominator",
    "credit",
    "debit",
    "of",
    "recent",
    "baseline",
}
MAX_WINDOW_MS = 31 * 86_400_000
MAX_DURATION_MS = 3650 * 86_400_000
MAX_VERSION = 1_000_000_000
# Which metric keys each kind takes (anything else is a mistake, not ignored).
KIND_KEYS = {
    "count": {"kind", "topics", "window", "resolution", "where"},
    "sum": {"kind", "topics", "field", "window", "resolution", "where"},
    "distinct": {"kind", "topics", "field", "window", "resolution", "where"},
    "ratio": {"kind", "window", "resolution", "numerator", "denominator"},
    "balance": {"kind", "window", "resolution", "credit", "debit"},
    "surge": {"kind", "of", "recent", "baseline"},
    "age": {"kind", "topics"},
}
# The two parts of a two-aggregate metric, by kind.
PARTS = {"ratio": ("numerator", "denominator"), "balance": ("credit", "debit")}
PART_KEYS = {"kind", "topics", "field", "where"}
REQUIRE_KEYS = {"age_of", "op", "value", "retain"}


@dataclass(frozen=True, slots=True)
class RuleError:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path}: {self.message}"


class Invalid(Exception):
    """Raised inside the parser after an error was recorded, to skip the rest of a rule."""


class Parser:
    def __init__(self, lines: dict[str, int]) -> None:
        self.errors: list[RuleError] = []
        self.lines = lines

    def fail(self, path: str, message: str) -> Invalid:
        line = None
        probe = path
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe.rpartition(".")[0] if "." in probe else ""
        self.errors.append(RuleError(path, message, line))
        return Invalid()

    def get(
        self,
        obj: dict[str, Any],
        key: str,
        path: str,
        kind: type | tuple[type, ...],
        default: Any = ...,
        what: str = "",
    ) -> Any:
        if key not in obj:
            if default is ...:
                raise self.fail(f"{path}.{key}", "is required")
            return default
        value = obj[key]
        if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
            raise self.fail(f"{path}.{key}", f"expected {what or _kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.fail(
                f"{path}.{key}", f"expected {what or _kind_name(kind)}, got {type(value).__name__}"
            )
        return value

    def enum(self, cls: Callable[[Any], Any], value: Any, path: str, choices: list[str]) -> Any:
        try:
            return cls(value)
        except ValueError:
            raise self.fail(path, f"{value!r} is not one of {', '.join(choices)}") from None

    def duration(self, value: Any, path: str) -> int:
        try:
            ms = parse_duration_ms(value)
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None
        if ms <= 0:
            raise self.fail(path, "must be positive")
        if ms > MAX_DURATION_MS:
            raise self.fail(path, "must be at most 3650d")
        return ms

    def topics(self, value: Any, path: str) -> frozenset[Topic]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names:
            raise self.fail(path, "expected a topic or a non-empty list of topics")
        choices = [t.value for t in Topic]
        return frozenset(self.enum(Topic, n, f"{path}[{i}]", choices) for i, n in enumerate(names))

    def entity(self, value: Any, path: str) -> tuple[EntityType, ...]:
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names:
            raise self.fail(path, "expected an entity or a list of entities (compound key)")
        choices = [e.value for e in EntityType]
        out = tuple(self.enum(EntityType, n, f"{path}[{i}]", choices) for i, n in enumerate(names))
        if len(set(out)) != len(out):
            raise self.fail(path, "an entity appears twice in the key")
        return out

    def check_field(self, field: str, topics: frozenset[Topic], path: str) -> None:
        for topic in sorted(topics):
            names = {f.name for f in dataclasses.fields(EVENT_CLASS[topic])}
            if field not in names:
                raise self.fail(path, f"{topic.value} events have no field {field!r}")

    def conditions(self, value: Any, topics: frozenset[Topic], path: str) -> tuple[Condition, ...]:
        if not isinstance(value, list):
            raise self.fail(path, "expected a list of {field, op, value} conditions")
        out = []
        for i, item in enumerate(value):
            p = f"{path}[{i}]"
            if not isinstance(item, dict):
                raise self.fail(p, "expected {field, op, value}")
            unknown = {str(k) for k in item} - {"field", "op", "value"}
            if unknown:
                raise self.fail(p, f"unknown key(s): {', '.join(sorted(unknown))}")
            field = self.get(item, "field", p, str)
            self.check_field(field, topics, f"{p}.field")
            op = self.enum(Op, self.get(item, "op", p, str), f"{p}.op", [o.value for o in Op])
            out.append(Condition(field, op, self.condition_value(item, op, p, field)))
        return tuple(out)

    def condition_value(self, item: dict[str, Any], op: Op, path: str, field: str) -> Any:
        if op in (Op.EXISTS, Op.ABSENT):
            return None
        if "value" not in item:
            raise self.fail(f"{path}.value", f"is required for op {op.value}")
        value = item["value"]
        if field.endswith("_minor"):
            return rule_money.condition_value(self, field, op, value, f"{path}.value")
        if op in (Op.IN, Op.NOT_IN):
            if not isinstance(value, list) or not value:
                raise self.fail(f"{path}.value", f"op {op.value} needs a non-empty list")
            return tuple(value)
        if op in (Op.GT, Op.GE, Op.LT, Op.LE) and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise self.fail(f"{path}.value", f"op {op.value} needs a number")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _metric(p: Parser, raw: Any, entity: tuple[EntityType, ...], path: str) -> Metric:
    if not isinstance(raw, dict):
        raise p.fail(path, "expected a mapping with `kind`")
    unknown = {str(k) for k in raw} - METRIC_KEYS
    if unknown:
        raise p.fail(path, f"unknown key(s): {', '.join(sorted(unknown))}")
    kinds = [k.value for k in AggregateKind if k is not AggregateKind.FIRST_SEEN] + [
        "ratio",
        "balance",
        "surge",
        "age",
    ]
    kind = p.get(raw, "kind", path, str)
    if kind not in kinds:
        raise p.fail(f"{path}.kind", f"{kind!r} is not one of {', '.join(kinds)}")
    extra = {str(k) for k in raw} - KIND_KEYS[kind]
    if extra:
        raise p.fail(path, f"{kind} does not take: {', '.join(sorted(extra))}")
    if kind == "age":
        topics = p.topics(raw["topics"], f"{path}.topics") if "topics" in raw else frozenset(Topic)
        first_seen = AggregateSpec(AggregateKind.FIRST_SEEN, topics, entity)
        return Metric(first_seen, kind=MetricKind.AGE)
    if kind == "surge":
        return _surge(p, raw, entity, path)
    window = _window(p, raw, "window", path)
    bucket = _resolution(p, raw, window, path)
    if kind in PARTS:
        specs = []
        for side in PARTS[kind]:
            part, q = _part(p, raw, side, path, kind), f"{path}.{side}"
            part_window, part_bucket = window, bucket
            if "window" in part:  # balance only: see _part
                part_window = _window(p, part, "window", q)
                part_bucket = _resolution(p, {**part, **raw}, part_window, q)
            specs.append(_aggregate(p, part, entity, part_window, part_bucket, q))
        if kind == "balance" and specs[0].per_currency != specs[1].per_currency:
            raise p.fail(path, "a balance subtracts money from money, or counts from counts")
        return Metric(specs[0], specs[1], kind=MetricKind(kind))
    return Metric(_aggregate(p, raw, entity, window, bucket, path))


def _window(p: Parser, raw: dict[str, Any], key: str, path: str) -> int:
    window = p.duration(p.get(raw, key, path, str), f"{path}.{key}")
    if window > MAX_WINDOW_MS:
        raise p.fail(f"{path}.{key}", "must be at most 31d")
    return window


def _part(p: Parser, raw: dict[str, Any], side: str, path: str, kind: str = "") -> dict[str, Any]:
    """One side of a two-aggregate metric. A balance side may have its own
    window: credits must reach back one settlement period further than
    debits, or the payouts at the window's start (which paid for earnings
    before it) look like money paid out without earnings."""
    part: dict[str, Any] = p.get(raw, side, path, dict)
    allowed = PART_KEYS | {"window"} if kind == "balance" else PART_KEYS
    extra = {str(k) for k in part} - allowed
    if extra:
        raise p.fail(f"{path}.{side}", f"unknown key(s): {', '.join(sorted(extra))}")
    return part


def _surge(p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str) -> Metric:
    """`of` counted over a `recent` window and over a longer `baseline` window
    ending at the same time; the baseline must leave room for history."""
    recent = _window(p, raw, "recent", path)
    baseline = _window(p, raw, "baseline", path)
    if baseline < 2 * recent:
        raise p.fail(f"{path}.baseline", "must be at least twice the recent window")
    part = _part(p, raw, "of", path)
    specs = []
    for key, window in (("recent", recent), ("baseline", baseline)):
        try:
            bucket = default_bucket_ms(window)
        except ValueError as exc:
            raise p.fail(f"{path}.{key}", str(exc)) from None
        specs.append(_aggregate(p, part, entity, window, bucket, f"{path}.of"))
    if specs[0].kind is AggregateKind.DISTINCT:
        raise p.fail(f"{path}.of.kind", "a surge compares counts or sums, not distinct counts")
    return Metric(specs[0], specs[1], kind=MetricKind.SURGE)


def _resolution(p: Parser, raw: dict[str, Any], window: int, path: str) -> int:
    if "resolution" in raw:
        bucket = p.duration(p.get(raw, "resolution", path, str), f"{path}.resolution")
        if window % bucket or window // bucket > 1440:
            raise p.fail(f"{path}.resolution", "must divide the window into at most 1440 buckets")
        return bucket
    try:
        return default_bucket_ms(window)
    except ValueError as exc:
        raise p.fail(f"{path}.window", str(exc)) from None


def _aggregate(
    p: Parser,
    raw: dict[str, Any],
    entity: tuple[EntityType, ...],
    window: int,
    bucket: int,
    path: str,
) -> AggregateSpec:
    kind_name = p.get(raw, "kind", path, str)
    kinds = [AggregateKind.COUNT.value, AggregateKind.SUM.value, AggregateKind.DISTINCT.value]
    if kind_name not in kinds:
        raise p.fail(f"{path}.kind", f"{kind_name!r} is not one of {', '.join(kinds)}")
    kind = AggregateKind(kind_name)
    topics = p.topics(p.get(raw, "topics", path, (str, list)), f"{path}.topics")
    field = None
    if kind in (AggregateKind.SUM, AggregateKind.DISTINCT):
        field = p.get(raw, "field", path, str)
        p.check_field(field, topics, f"{path}.field")
        if kind is AggregateKind.SUM and not (field.endswith("_minor")):
            raise p.fail(f"{path}.field", "sum needs an integer money field (*_minor)")
    elif "field" in raw:
        raise p.fail(f"{path}.field", "only sum and distinct take a field")
    where = p.conditions(raw["where"], topics, f"{path}.where") if "where" in raw else ()
    return AggregateSpec(kind, topics, entity, field, window, bucket, where)


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


def _requires(p: Parser, raw: Any, path: str) -> tuple[AgeRequirement, ...]:
    if not isinstance(raw, list):
        raise p.fail(path, "expected a list of {age_of, op, value}")
    out = []
    for i, item in enumerate(raw):
        q = f"{path}[{i}]"
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
        first_seen = AggregateSpec(
            AggregateKind.FIRST_SEEN, frozenset(Topic), entity, window_ms=retain
        )
        out.append(AgeRequirement(first_seen, comparison, age))
    return tuple(out)


def parse_rule(p: Parser, raw: Any, path: str, defaults: dict[str, Any]) -> Rule:
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
    metric = _metric(p, raw["metric"], entity, f"{path}.metric")
    comparison = p.enum(
        Comparison, raw["compare"], f"{path}.compare", [c.value for c in Comparison]
    )
    threshold = _threshold(p, raw["threshold"], metric, comparison, f"{path}.threshold")
    min_volume = rule_money.min_volume(p, raw, metric, path)
    rule_money.same_currencies(p, threshold, min_volume, path)
    where = p.conditions(raw["where"], topics, f"{path}.where") if "where" in raw else ()
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
        requires=_requires(p, raw["requires"], f"{path}.requires") if "requires" in raw else (),
    )


def _threshold(
    p: Parser, raw: Any, metric: Metric, comparison: Comparison, path: str
) -> float | PerCurrency:
    if metric.is_age:
        # `>= 0s` is meaningful: "was seen at all before this event".
        return 0.0 if raw in (0, "0", "0s") else float(p.duration(raw, path))
    money = rule_money.threshold(p, raw, metric, path)
    if money is not None:
        return money
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise p.fail(path, "expected a number")
    if metric.kind is MetricKind.RATIO and not 0 <= raw <= 1 and _like_for_like(metric):
        raise p.fail(path, "a ratio threshold is a fraction between 0 and 1")
    rising = comparison in (Comparison.GE, Comparison.GT)
    if metric.kind is MetricKind.SURGE and rising and raw <= 1:
        raise p.fail(path, "a surge threshold is a factor above 1 (e.g. 5 = five times the usual)")
    if metric.kind is MetricKind.SURGE and not rising and not 0 < raw < 1:
        raise p.fail(
            path, "a drop below the usual rate is a factor between 0 and 1 (0.2 = a fifth)"
        )
    return float(raw)


def _like_for_like(metric: Metric) -> bool:
    """Count over count or sum over the same field: a share, so at most 1 is
    meant (a threshold of 50 is a typo for 0.5). Count over distinct values
    (orders per buyer) is a rate and may be any size."""
    other = metric.other
    assert other is not None
    return metric.aggregate.kind is other.kind and metric.aggregate.field == other.field
