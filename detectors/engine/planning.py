"""Planning: which aggregates an event feeds and which its rules read, grouped
per entity the way the store handles them.

Everything that depends only on the topic and the rulebook is settled once
(the Plan); the per-event path only reads the event's entity ids and
contributions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.counted import ReportFloor
from detectors.events import Event, Topic
from detectors.rulebook import Rulebook
from detectors.rules import Rule
from detectors.rules_entities import ENTITY_FIELDS, EntityType

__all__ = [
    "AggregateRequest",
    "EntityGroup",
    "GroupRequest",
    "Plan",
    "group_requests",
    "report_floors",
]


@dataclass(frozen=True, slots=True)
class AggregateRequest:
    """Apply `contribution` (None: read only) to an aggregate of one entity."""

    spec: AggregateSpec
    entity_ids: tuple[str, ...]
    contribution: int | str | None


@dataclass(frozen=True, slots=True)
class EntityGroup:
    """Every aggregate of one entity that events of a topic feed or read.

    The store handles a group as one unit (one entity, one atomic step, one
    duplicate guard), so the engine asks per group rather than per
    aggregate: an order touches some ten aggregates but only three or four
    entities, and the entity's ids are looked up and keyed once."""

    entity: tuple[EntityType, ...]
    specs: tuple[AggregateSpec, ...]
    # Per spec, from which value the store hands back the events it counted
    # (detectors.counted); empty or None: never.
    report_at: tuple[ReportFloor | None, ...] = ()
    # Per spec, whether the store keeps its ring of counted events: where
    # some rule of the rule set, on any topic, has a floor for it (reads it
    # as its main aggregate and fires on a rise). Empty: where this group
    # has a floor.
    ringed: tuple[bool, ...] = ()
    # The store's cache key: entity and aggregate ids, computed once.
    signature: str = dataclasses.field(default="", compare=False)

    def __post_init__(self) -> None:
        sig = "+".join(e.value for e in self.entity) + ":" + ",".join(s.agg_id for s in self.specs)
        if any(self.report_at):
            sig += "@" + ",".join(f.signature() if f else "" for f in self.report_at)
        if self.ringed:
            sig += "#" + "".join("1" if r else "0" for r in self.ringed)
            floors = self.report_at or (None,) * len(self.ringed)
            if any(f is not None and not r for f, r in zip(floors, self.ringed, strict=True)):
                raise ValueError(f"{sig}: a spec with a report floor must keep a ring")
        object.__setattr__(self, "signature", sig)

    def floor(self, position: int) -> ReportFloor | None:
        return self.report_at[position] if self.report_at else None

    def keeps_ring(self, position: int) -> bool:
        """Rings cost every counted event a longer write, so they are kept
        only where an alert can list them."""
        if self.ringed:
            return self.ringed[position]
        return self.floor(position) is not None


class GroupRequest(NamedTuple):
    """One event's contributions to a group's aggregates for one entity,
    aligned with `group.specs` (None: only read). Built per entity and event,
    hence a NamedTuple."""

    group: EntityGroup
    entity_ids: tuple[str, ...]
    contributions: tuple[int | str | None, ...]

    def aggregate_requests(self) -> list[AggregateRequest]:
        return [
            AggregateRequest(spec, self.entity_ids, c)
            for spec, c in zip(self.group.specs, self.contributions, strict=True)
        ]


def group_requests(requests: Sequence[AggregateRequest]) -> list[GroupRequest]:
    """Loose per-aggregate requests → per-entity groups (tools and tests that
    ask for a few aggregates by hand; the Plan builds groups directly)."""
    by_entity: dict[tuple[tuple[EntityType, ...], tuple[str, ...]], list[AggregateRequest]] = {}
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for req in requests:
        if (req.spec.agg_id, req.entity_ids) in seen:
            # One event adds to an aggregate once; two requests are a caller's mistake.
            raise ValueError(f"aggregate {req.spec.agg_id} requested twice for {req.entity_ids}")
        seen.add((req.spec.agg_id, req.entity_ids))
        _check_contribution(req)
        by_entity.setdefault((req.spec.entity, req.entity_ids), []).append(req)
    return [
        GroupRequest(
            EntityGroup(entity, tuple(r.spec for r in reqs)),
            ids,
            tuple(r.contribution for r in reqs),
        )
        for (entity, ids), reqs in by_entity.items()
    ]


def _check_contribution(req: AggregateRequest) -> None:
    """The store hands contributions to its script as they are: an int for a
    count, sum or sighting, a str for a distinct member (what
    AggregateSpec.contribution returns). A hand-built request with anything
    else (a bool, an int member) would fail or miscount in the script."""
    c = req.contribution
    want = str if req.spec.kind is AggregateKind.DISTINCT else int
    if c is not None and type(c) is not want:
        raise TypeError(
            f"aggregate {req.spec.agg_id}: contribution {c!r} must be {want.__name__} or None"
        )


class Plan:
    """Precomputed per topic: which aggregates consume it and which rules judge
    it (and so which aggregates they read). `requests` runs for every event,
    so everything that depends only on the topic is settled here, once: the
    per-event path walks flat tuples and never hashes a spec."""

    def __init__(
        self,
        rulebook: Rulebook,
        extra_reads: Mapping[Topic, tuple[AggregateSpec, ...]] | None = None,
    ) -> None:
        """`extra_reads`: aggregates every event of a topic reads besides its
        rules' (the merchant-health rates, detectors.health_rates); they are
        fed by their own topics like any rule's."""
        self.rulebook = rulebook
        extra_reads = extra_reads or {}
        aggs = _unique(
            (*rulebook.aggregates(), *(s for specs in extra_reads.values() for s in specs))
        )
        self.feeds: dict[Topic, tuple[AggregateSpec, ...]] = {
            t: tuple(a for a in aggs if t in a.topics) for t in Topic
        }
        self.judges: dict[Topic, tuple[Rule, ...]] = {
            t: tuple(r for r in rulebook.rules if t in r.topics) for t in Topic
        }
        # A ring is written by every topic feeding the aggregate, while only
        # its rules' topics read it: the set spans the whole rule set.
        ringed = frozenset(report_floors(rulebook.rules))
        self._compiled = {
            t: _TopicPlan(t, self.feeds[t], self.judges[t], extra_reads.get(t, ()), ringed)
            for t in Topic
        }

    def requests(self, topic: Topic, event: Event) -> list[GroupRequest]:
        """Per entity of the event: every aggregate it feeds or its rules read."""
        return self._compiled[topic].requests(event)


# A fed aggregate whose contribution depends on the event: (its position in
# the group, spec).
_Feeder = tuple[int, AggregateSpec]
# (group, the event attributes holding each of its entity ids (first one set
# wins), feeders asking the event, contributions with every constant one set)
_CompiledGroup = tuple[
    EntityGroup, tuple[tuple[str, ...], ...], tuple[_Feeder, ...], tuple[int | None, ...]
]


def report_floors(rules: Sequence[Rule]) -> dict[str, ReportFloor]:
    """Per main aggregate of `rules`, the lowest of their report floors."""
    floors: dict[str, ReportFloor] = {}
    for rule in rules:
        floor = rule.metric.evaluator.report_floor(rule)
        if floor is not None:
            agg_id = rule.metric.aggregate.agg_id
            known = floors.get(agg_id)
            floors[agg_id] = floor if known is None else known.lower(floor)
    return floors


class _TopicPlan:
    """One topic's share of a Plan, flattened for the per-event path.

    Rules' reads are not filtered by their conditions: a group reads all its
    aggregates in the same store step, which saves checking conditions twice
    (the rules check them) for one small command per unneeded read."""

    def __init__(
        self,
        topic: Topic,
        feeds: tuple[AggregateSpec, ...],
        rules: tuple[Rule, ...],
        reads: tuple[AggregateSpec, ...],
        ringed: frozenset[str],
    ) -> None:
        self.topic = topic
        by_entity: dict[tuple[EntityType, ...], dict[str, AggregateSpec]] = {}
        for spec in feeds:
            by_entity.setdefault(spec.entity, {}).setdefault(spec.agg_id, spec)
        for rule in rules:
            for spec in rule.aggregates():
                by_entity.setdefault(spec.entity, {}).setdefault(spec.agg_id, spec)
        for spec in reads:
            by_entity.setdefault(spec.entity, {}).setdefault(spec.agg_id, spec)
        fed = {s.agg_id for s in feeds}
        floors = report_floors(rules)
        groups: list[_CompiledGroup] = []
        for entity, specs in by_entity.items():
            ordered = tuple(specs.values())
            group = EntityGroup(
                entity,
                ordered,
                tuple(floors.get(s.agg_id) for s in ordered),
                tuple(s.agg_id in ringed for s in ordered),
            )
            base = tuple(
                _constant_contribution(s) if s.agg_id in fed else None for s in group.specs
            )
            asking = tuple(
                (i, s) for i, s in enumerate(group.specs) if s.agg_id in fed and base[i] is None
            )
            fields = tuple(ENTITY_FIELDS[e] for e in entity)
            groups.append((group, fields, asking, base))
        self.groups: tuple[_CompiledGroup, ...] = tuple(groups)

    def requests(self, event: Event) -> list[GroupRequest]:
        out = []
        topic = self.topic
        for group, fields, asking, base in self.groups:
            ids = _entity_ids(event, fields)
            if ids is None:
                continue  # the event lacks this entity
            if not asking:
                out.append(GroupRequest(group, ids, base))
                continue
            contributions: list[int | str | None] = list(base)
            for i, spec in asking:
                contributions[i] = spec.contribution(topic, event)
            out.append(GroupRequest(group, ids, tuple(contributions)))
        return out


def _entity_ids(event: Event, fields: tuple[tuple[str, ...], ...]) -> tuple[str, ...] | None:
    """What AggregateSpec.entity_ids returns, from precomputed attribute names."""
    ids = []
    for names in fields:
        for name in names:
            value = getattr(event, name, None)
            if value is not None:
                ids.append(value if type(value) is str else str(value))
                break
        else:
            return None
    return tuple(ids)


def _unique(specs: Sequence[AggregateSpec]) -> tuple[AggregateSpec, ...]:
    seen: dict[str, AggregateSpec] = {}
    for spec in specs:
        seen.setdefault(spec.agg_id, spec)
    return tuple(seen.values())


def _constant_contribution(spec: AggregateSpec) -> int | None:
    """1 for a count or a sighting without conditions: what `contribution`
    returns for every event of a topic the spec is fed by, without the call.
    Anything else (conditions, values read from the event) asks the spec."""
    if not spec.where and spec.kind in (AggregateKind.COUNT, AggregateKind.FIRST_SEEN):
        return 1
    return None
