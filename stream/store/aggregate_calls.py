"""A batch of per-entity requests → the arguments of aggregates.lua calls, and
the script's flat reply → observations.

This runs for every entity of every event, so everything that depends only
on a group of aggregates (the specs the script refers to, the entity's key
suffixes, the reply layout) is computed once per group, and everything that
depends only on an entity (its hash tag, key prefix, slot) once per entity
and batch. The script's input is flat (see aggregates.lua): a nested list
per unit costs both Python and Lua an object per unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.engine import EntityGroup, Observation
from detectors.rules_entities import EntityType
from stream.store import keys
from stream.store.base import EventObservations, EventRequests, EventStatus

# Op kinds, as aggregates.lua numbers them.
SUM, DISTINCT, FIRST = 1, 2, 3
# Only count/sum are not idempotent by themselves; distinct and first-seen
# need no duplicate guard.
_GUARDED = frozenset({AggregateKind.COUNT, AggregateKind.SUM})
_STATUS = {1: EventStatus.NEW, 0: EventStatus.DUPLICATE, -1: EventStatus.TOO_OLD}


@dataclass(frozen=True, slots=True)
class Limits:
    """The store settings the script's arguments are derived from."""

    dedup_horizon_ms: int
    lateness_ms: int
    first_seen_ttl_ms: int
    ttl_slack_ms: int
    first_seen_backdate_ms: int


@dataclass(frozen=True, slots=True)
class GroupTemplate:
    """What a unit of one group needs: its row in the group table, its keys
    (as suffixes of the entity's prefix) and the layout of its reply."""

    index: int  # position in the group table (from 1)
    entity: tuple[EntityType, ...]
    suffixes: tuple[str, ...]
    layout: tuple[tuple[str, int, int], ...]  # per op: agg_id, kind, bucket ms (sum; else 0)


@dataclass(frozen=True, slots=True)
class _Spec:
    index: int  # position in the spec table (from 1)
    kind: int
    ttl_ms: int  # how long the spec's state must outlive its last write
    suffix: str  # the key of a distinct or first-seen spec; sums share the state key


class Templates:
    """Specs and groups by id, and the table (JSON) every call carries. Grows
    only when a rule set brings a new group."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._specs: dict[str, _Spec] = {}
        self._spec_rows: list[list[Any]] = []
        self._groups: dict[str, GroupTemplate] = {}
        self._group_ops: list[tuple[tuple[EntityType, ...], list[int]]] = []
        # Per entity: how long its state key must outlive the last write (the
        # longest window any declared group keeps there).
        self._state_ttl: dict[tuple[EntityType, ...], int] = {}
        self.table_json = b"[[],[]]"

    def group(self, group: EntityGroup) -> GroupTemplate:
        tpl = self._groups.get(group.signature)
        return tpl if tpl is not None else self._add_group(group)

    def _add_group(self, group: EntityGroup) -> GroupTemplate:
        suffixes: dict[str, int] = {}

        def kpos(suffix: str) -> int:
            return suffixes.setdefault(suffix, len(suffixes) + 1)

        specs = [self._spec(s) for s in group.specs]
        shared = any(sp.kind != FIRST for sp in specs)
        guarded = any(s.kind in _GUARDED for s in group.specs)
        state = kpos(keys.STATE_SUFFIX) if shared else 0
        guard = kpos(keys.GUARD_SUFFIX) if guarded else 0
        ops: list[int] = []
        layout = []
        for spec, sp in zip(group.specs, specs, strict=True):
            ops += (sp.index, 0 if sp.kind == SUM else kpos(sp.suffix))
            if sp.kind != FIRST:
                ttl = self._state_ttl.get(group.entity, 0)
                self._state_ttl[group.entity] = max(ttl, sp.ttl_ms)
            layout.append((spec.agg_id, sp.kind, (spec.bucket_ms or 0) if sp.kind == SUM else 0))
        self._group_ops.append((group.entity, [state, guard, len(suffixes), *ops]))
        tpl = GroupTemplate(len(self._group_ops), group.entity, tuple(suffixes), tuple(layout))
        self._groups[group.signature] = tpl
        self._rebuild()
        return tpl

    def _spec(self, spec: AggregateSpec) -> _Spec:
        known = self._specs.get(spec.agg_id)
        if known is not None:
            return known
        lim = self._limits
        ttl = (spec.window_ms or 0) + lim.lateness_ms + lim.ttl_slack_ms + (spec.bucket_ms or 0)
        index = len(self._spec_rows) + 1
        if spec.kind is AggregateKind.FIRST_SEEN:
            # A first-seen spec may carry its own, shorter retention (an order's
            # age is needed for weeks, not a year), in its own key: one key's
            # TTL must suit every field in it.
            retain = lim.first_seen_ttl_ms if spec.window_ms is None else ttl
            row: list[Any] = [FIRST, spec.agg_id, retain, lim.first_seen_backdate_ms]
            out = _Spec(index, FIRST, retain, keys.first_seen_suffix(spec.window_ms))
        elif spec.kind is AggregateKind.DISTINCT:
            row = [DISTINCT, spec.window_ms, lim.lateness_ms, ttl, spec.agg_id]
            out = _Spec(index, DISTINCT, ttl, keys.aggregate_suffix(spec.agg_id))
        else:
            assert spec.bucket_ms is not None and spec.window_ms is not None
            late_buckets = -(-lim.lateness_ms // spec.bucket_ms)
            guarded = 1 if spec.kind in _GUARDED else 0
            n = spec.window_ms // spec.bucket_ms
            row = [SUM, spec.bucket_ms, n, late_buckets, spec.agg_id, guarded]
            out = _Spec(index, SUM, ttl, keys.STATE_SUFFIX)
        self._spec_rows.append(row)
        self._specs[spec.agg_id] = out
        return out

    def _rebuild(self) -> None:
        rows = []
        for entity, (state, guard, nkeys, *ops) in self._group_ops:
            rows.append([state, guard, nkeys, self._state_ttl.get(entity, 0), *ops])
        self.table_json = orjson.dumps([self._spec_rows, rows])

    def declare(self, groups: Iterable[EntityGroup]) -> None:
        """Every group up front: an entity's state TTL is the longest of all
        its groups' windows, so it is known before the first batch (a group
        seen later only lengthens it, which the script applies at once)."""
        for group in groups:
            self.group(group)


class AggregateCall:
    """The keys, flat units and reply layout of one script call (one slot on a cluster)."""

    __slots__ = ("argv", "flat", "keys", "where")

    def __init__(self) -> None:
        self.keys: dict[str, int] = {}
        self.flat: list[Any] = []
        self.argv: list[Any] = []  # the script's ARGV, once encoded
        self.where: list[tuple[int, GroupTemplate]] = []  # per unit: its event, its group

    def kidx(self, key: str) -> int:
        idx = self.keys.get(key)
        if idx is None:
            idx = self.keys[key] = len(self.keys) + 1
        return idx


def encode(
    events: Sequence[EventRequests],
    templates: Templates,
    namespace: str,
    slot_of: Callable[[str], int],
    event_hash: Callable[[str], str],
) -> dict[int, AggregateCall]:
    """One AggregateCall per slot; per event one unit per entity it touches:
    group, event hash, event ms, the unit's key indexes, its contributions."""
    calls: dict[int, AggregateCall] = {}
    entities: dict[tuple[tuple[EntityType, ...], tuple[str, ...]], tuple[str, AggregateCall]] = {}
    for ei, ev in enumerate(events):
        ehash = event_hash(ev.event_id) if ev.requests else ""
        for req in ev.requests:
            tpl = templates.group(req.group)
            entity = entities.get((tpl.entity, req.entity_ids))
            if entity is None:
                tag = keys.entity_tag(tpl.entity, req.entity_ids)
                slot = slot_of(tag)
                call = calls.get(slot)
                if call is None:
                    call = calls[slot] = AggregateCall()
                entity = entities[(tpl.entity, req.entity_ids)] = (
                    keys.entity_prefix(namespace, tag),
                    call,
                )
            prefix, call = entity
            kidx = call.kidx
            flat = call.flat
            flat += (tpl.index, ehash, ev.event_ms)
            flat += [kidx(prefix + s) for s in tpl.suffixes]
            flat += req.contributions
            call.where.append((ei, tpl))
    return calls


def decode(
    events: Sequence[EventRequests], calls: dict[int, AggregateCall], replies: dict[int, Any]
) -> list[EventObservations]:
    """The flat replies → per event its least favourable status and one
    observation per aggregate."""
    values: list[dict[str, Observation]] = [{} for _ in events]
    status = [1] * len(events)  # 1 new > 0 duplicate > -1 too old: the least wins
    for slot, call in calls.items():
        flat, at = replies[slot], 0
        for ei, tpl in call.where:
            if flat[at] < status[ei]:
                status[ei] = flat[at]
            at += 1
            row = values[ei]
            for agg_id, kind, bucket_ms in tpl.layout:
                value, end = flat[at], flat[at + 1]
                at += 2
                if kind == FIRST:
                    row[agg_id] = Observation(value, 0)
                elif value < 0:
                    row[agg_id] = Observation(None, 0)
                elif kind == DISTINCT:
                    row[agg_id] = Observation(value, end + 1)
                else:
                    row[agg_id] = Observation(value, (end + 1) * bucket_ms)
        if at != len(flat):
            raise RuntimeError(f"aggregate script returned {len(flat)} values, expected {at}")
    expected = sum(len(r.contributions) for ev in events for r in ev.requests)
    if sum(len(v) for v in values) != expected:
        raise RuntimeError("aggregate script calls left requests unanswered")
    return [EventObservations(_STATUS[st], row) for st, row in zip(status, values, strict=True)]
