"""The building blocks of a rule file, parsed with every mistake recorded at
its path (and line): durations, topics, entities, conditions, windows and
aggregates. Rules (`detectors.rule_parsing`) and metric kinds
(`detectors.metric_kinds`) are written with these."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors import rule_money
from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.durations import parse_duration_ms
from detectors.events import EVENT_CLASS, Topic
from detectors.rules_conditions import Condition, Op
from detectors.rules_entities import EntityType
from detectors.windows import default_bucket_ms

__all__ = [
    "MAX_DURATION_MS",
    "MAX_WINDOW_MS",
    "PART_KEYS",
    "Invalid",
    "Parser",
    "RuleError",
    "aggregate",
    "part",
    "resolution",
    "window",
    "windowed_aggregate",
]

MAX_WINDOW_MS = 31 * 86_400_000
MAX_DURATION_MS = 3650 * 86_400_000
# The keys of one aggregate inside a metric reading several.
PART_KEYS = frozenset({"kind", "topics", "field", "where"})


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
    """Reads rule-file values, recording each mistake (with its line) and
    raising Invalid to skip the rest of the rule, so that one run reports
    every mistake in the file."""

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
        return tuple(self.condition(item, topics, f"{path}[{i}]") for i, item in enumerate(value))

    def condition(self, item: Any, topics: frozenset[Topic], p: str) -> Condition:
        """One `{field, op, value}` condition on the event."""
        if not isinstance(item, dict):
            raise self.fail(p, "expected {field, op, value}")
        if "list" in item:
            # A list condition gates a rule's decision (see rule_parsing).
            raise self.fail(
                f"{p}.list",
                "a list condition belongs in a rule's `where`: aggregates count every event",
            )
        unknown = {str(k) for k in item} - {"field", "op", "value"}
        if unknown:
            raise self.fail(p, f"unknown key(s): {', '.join(sorted(unknown))}")
        field = self.get(item, "field", p, str)
        self.check_field(field, topics, f"{p}.field")
        op = self.enum(Op, self.get(item, "op", p, str), f"{p}.op", [o.value for o in Op])
        return Condition(field, op, self.condition_value(item, op, p, field))

    def condition_value(self, item: dict[str, Any], op: Op, path: str, field: str) -> Any:
        if op in (Op.EXISTS, Op.ABSENT):
            return None
        if "value" not in item:
            raise self.fail(f"{path}.value", f"is required for op {op.value}")
        value = item["value"]
        if field.endswith("_minor"):
            return rule_money.condition_value(self, field, op, value, f"{path}.value")
        if field.endswith("_ms") and isinstance(value, str):
            return self.duration(value, f"{path}.value")  # {field: order_age_ms, value: 2d}
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


def window(p: Parser, raw: dict[str, Any], key: str, path: str) -> int:
    """A window's length (`raw[key]`), at most 31 days."""
    ms = p.duration(p.get(raw, key, path, str), f"{path}.{key}")
    if ms > MAX_WINDOW_MS:
        raise p.fail(f"{path}.{key}", "must be at most 31d")
    return ms


def part(
    p: Parser, raw: dict[str, Any], side: str, path: str, also: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """One aggregate of a metric reading several (a ratio's numerator, a
    surge's `of`): the keys of an aggregate, without its window unless the
    kind allows one per part (`also`)."""
    part: dict[str, Any] = p.get(raw, side, path, dict)
    extra = {str(k) for k in part} - (PART_KEYS | also)
    if extra:
        raise p.fail(f"{path}.{side}", f"unknown key(s): {', '.join(sorted(extra))}")
    return part


def resolution(p: Parser, raw: dict[str, Any], window_ms: int, path: str) -> int:
    """The bucket size of a window: `resolution`, or a round default."""
    if "resolution" in raw:
        bucket = p.duration(p.get(raw, "resolution", path, str), f"{path}.resolution")
        if window_ms % bucket or window_ms // bucket > 1440:
            raise p.fail(f"{path}.resolution", "must divide the window into at most 1440 buckets")
        return bucket
    try:
        return default_bucket_ms(window_ms)
    except ValueError as exc:
        raise p.fail(f"{path}.window", str(exc)) from None


def aggregate(
    p: Parser,
    raw: dict[str, Any],
    entity: tuple[EntityType, ...],
    window_ms: int,
    bucket: int,
    path: str,
) -> AggregateSpec:
    """A count, sum or distinct count of `entity` over a given window."""
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
    return AggregateSpec(kind, topics, entity, field, window_ms, bucket, where)


def windowed_aggregate(
    p: Parser, raw: dict[str, Any], entity: tuple[EntityType, ...], path: str
) -> AggregateSpec:
    """A count, sum or distinct count over the section's `window` (and
    `resolution`)."""
    span = window(p, raw, "window", path)
    return aggregate(p, raw, entity, span, resolution(p, raw, span, path), path)
