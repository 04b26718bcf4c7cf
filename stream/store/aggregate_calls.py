"""A batch of per-entity requests → the arguments of aggregates.lua calls, and
the script's flat reply → observations.

This runs for every op of every event, so everything that depends only on
an aggregate's definition (its place in the spec table, its key suffix, its
TTLs) is computed once per spec, everything that depends only on a group of
aggregates once per group, and everything that depends only on an entity
(its hash tag, its key prefix, its slot) once per entity and batch.
The script's input is flat (see aggregates.lua): a nested list per op costs
both Python and Lua an object per op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.counted import Counted
from detectors.engine import EntityGroup, Observation
from detectors.rules_entities import EntityType
from stream.store import keys
from stream.store.base import EventObservations, EventRequests, EventStatus
from stream.store.slot_tags import slot_tag

__all__ = ["AggregateCall", "GroupTemplate", "Limits", "Template", "Templates", "decode", "encode"]

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
    counted_events: int = 0  # the ring size (detectors.counted); 0: no rings


@dataclass(frozen=True, slots=True)
class Template:
    """The per-spec constants of an op."""

    index: int  # position in the spec table (from 1)
    kind: int
    entity: tuple[EntityType, ...]
    suffix: str  # the key after the entity prefix
    guarded: bool
    bucket_ms: int  # sum: bucket size (turns the end bucket into ms); else 0
    per_currency: bool = False  # money: one key per currency


@dataclass(frozen=True, slots=True)
class GroupTemplate:
    """A group's ops, precomputed once per group: spec indices and key
    suffixes in op order, the positions of guarded (count/sum) ops, and the
    reply layout (agg_id, kind, bucket ms)."""

    entity: tuple[EntityType, ...]
    indices: tuple[int, ...]
    suffixes: tuple[str, ...]
    guarded: tuple[int, ...]  # op positions whose contribution needs the duplicate guard
    layout: tuple[tuple[str, int, int], ...]
    distinct: tuple[int, ...]  # op positions whose member is hashed (keys.KeyHasher.member)
    money: tuple[int, ...]  # op positions whose key names the event's currency
    group: EntityGroup | None = field(default=None, compare=False)
    ringed: bool = False  # whether any count or sum op keeps a ring (its units carry the event id)
    # Per currency: the key suffixes and spec indices (a sum's report floor
    # is per currency, so its spec row is too).
    by_currency: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = field(
        default_factory=dict, compare=False
    )

    def in_currency(
        self, currency: str | None, templates: Templates
    ) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """The key suffixes and spec indices for an event in `currency`
        (computed once per currency)."""
        if not self.money:
            return self.suffixes, self.indices
        found = self.by_currency.get(currency or "")
        if found is None:
            if currency is None:
                raise ValueError("sums are kept per currency: the event's currency is required")
            assert self.group is not None
            suffixes, indices = list(self.suffixes), list(self.indices)
            for i in self.money:
                spec = self.group.specs[i]
                suffixes[i] = keys.aggregate_suffix(self.layout[i][0], currency)
                indices[i] = templates.row(
                    spec, _report_at(self.group, i, currency), self.group.keeps_ring(i)
                )
            found = self.by_currency[currency] = (tuple(suffixes), tuple(indices))
        return found


def _report_at(group: EntityGroup, position: int, currency: str | None) -> int:
    floor = group.floor(position)
    return floor.at(currency) if floor is not None else 0


class Templates:
    """Templates by agg_id and by group, and the spec table (JSON) every call
    carries. Grows when a rule set brings a new aggregate, report floor or
    ring flag (one row per combination)."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._by_id: dict[str, Template] = {}
        # (agg_id, report_at, ring) -> spec index
        self._rows: dict[tuple[str, int, bool], int] = {}
        self._groups: dict[str, GroupTemplate] = {}
        self._table: list[list[Any]] = []
        self.table_json = b"[]"
        self.rings = limits.counted_events > 0

    def group(self, group: EntityGroup) -> GroupTemplate:
        tpl = self._groups.get(group.signature)
        if tpl is None:
            specs = [self.get(s) for s in group.specs]
            tpl = self._groups[group.signature] = GroupTemplate(
                group.entity,
                tuple(
                    self.row(s, _report_at(group, i, None), group.keeps_ring(i))
                    if t.kind == SUM
                    else t.index
                    for i, (s, t) in enumerate(zip(group.specs, specs, strict=True))
                ),
                tuple(t.suffix for t in specs),
                tuple(i for i, t in enumerate(specs) if t.guarded),
                tuple(
                    (s.agg_id, t.kind, t.bucket_ms) for s, t in zip(group.specs, specs, strict=True)
                ),
                tuple(i for i, t in enumerate(specs) if t.kind == DISTINCT),
                tuple(i for i, t in enumerate(specs) if t.per_currency),
                group,
                self.rings and any(group.keeps_ring(i) for i, t in enumerate(specs) if t.guarded),
            )
        return tpl

    def row(self, spec: AggregateSpec, report_at: int, ring: bool) -> int:
        """The index of a count's or sum's spec row with this report floor
        and ring flag: one row per pair, since the script reads both from
        the row."""
        ring = ring and self.rings
        if not report_at and not ring:
            return self.get(spec).index
        found = self._rows.get((spec.agg_id, report_at, ring))
        if found is None:
            base = self._table[self.get(spec).index - 1]
            self._table.append([*base[:5], report_at, int(ring)])
            self.table_json = orjson.dumps(self._table)
            found = self._rows[(spec.agg_id, report_at, ring)] = len(self._table)
        return found

    def get(self, spec: AggregateSpec) -> Template:
        tpl = self._by_id.get(spec.agg_id)
        return tpl if tpl is not None else self._add(spec)

    def _add(self, spec: AggregateSpec) -> Template:
        lim = self._limits
        ttl = (spec.window_ms or 0) + lim.lateness_ms + lim.ttl_slack_ms + (spec.bucket_ms or 0)
        index = len(self._table) + 1
        if spec.kind is AggregateKind.FIRST_SEEN:
            # A first-seen spec may carry its own, shorter retention (an order's
            # age is needed for weeks, not a year), in its own key: one key's
            # TTL must suit every field in it.
            retain = lim.first_seen_ttl_ms if spec.window_ms is None else ttl
            suffix = keys.first_seen_suffix(spec.window_ms)
            row: list[Any] = [FIRST, spec.agg_id, retain, lim.first_seen_backdate_ms]
            tpl = Template(index, FIRST, spec.entity, suffix, False, 0)
        elif spec.kind is AggregateKind.DISTINCT:
            row = [DISTINCT, spec.window_ms, lim.lateness_ms, ttl]
            suffix = keys.aggregate_suffix(spec.agg_id)
            tpl = Template(index, DISTINCT, spec.entity, suffix, False, 0)
        else:
            assert spec.bucket_ms is not None and spec.window_ms is not None
            late_buckets = -(-lim.lateness_ms // spec.bucket_ms)
            row = [SUM, spec.bucket_ms, spec.window_ms // spec.bucket_ms, late_buckets, ttl, 0, 0]
            suffix = keys.aggregate_suffix(spec.agg_id)
            guarded = spec.kind in _GUARDED
            tpl = Template(
                index, SUM, spec.entity, suffix, guarded, spec.bucket_ms, spec.per_currency
            )
        self._table.append(row)
        self.table_json = orjson.dumps(self._table)
        self._by_id[spec.agg_id] = tpl
        return tpl


class AggregateCall:
    """The keys, flat units and reply layout of one script call (one slot on a
    cluster), and the key of that slot's duplicate guard."""

    __slots__ = ("argv", "flat", "guard", "keys", "reply_size", "where")

    def __init__(self, guard: str) -> None:
        self.guard = guard
        self.keys: dict[str, int] = {}
        self.flat: list[Any] = []
        self.argv: list[Any] = []  # the script's ARGV, once encoded
        self.where: list[tuple[int, GroupTemplate]] = []  # per unit: its event, its group
        self.reply_size = 0  # the answer's main part: per unit its status, 2 per op

    def kidx(self, key: str) -> int:
        idx = self.keys.get(key)
        if idx is None:
            idx = self.keys[key] = len(self.keys) + 1
        return idx


# An entity of the batch: (its key prefix, the call its keys go to).
_Entity = tuple[str, AggregateCall]


def encode(
    events: Sequence[EventRequests],
    templates: Templates,
    namespace: str,
    slot_of: Callable[[str], int],
    event_hash: Callable[[str], str],
    hasher: keys.KeyHasher,
) -> dict[int, AggregateCall]:
    """One AggregateCall per slot; per event one unit per entity it touches.
    An op is (spec, key, contribution): a contribution is what the script
    adds (an int for count/sum, a distinct member's keyed hash), None (JSON
    null) when the event only reads. An event's first unit in a call that
    adds to a count or sum names the call's guard; its later ones there
    say -1 (the same verdict), since one event is recorded once per guard."""
    calls: dict[int, AggregateCall] = {}
    entities: dict[tuple[tuple[EntityType, ...], tuple[str, ...]], _Entity] = {}
    group_of = templates.group
    for ei, ev in enumerate(events):
        if not ev.requests:
            continue
        ehash = event_hash(ev.event_id)
        guarded_in: list[AggregateCall] = []  # the calls whose guard this event went through
        for req in ev.requests:
            tpl = group_of(req.group)
            entity = entities.get((tpl.entity, req.entity_ids))
            if entity is None:
                tag = hasher.tag(tpl.entity, req.entity_ids)
                entity = entities[(tpl.entity, req.entity_ids)] = (
                    keys.entity_prefix(namespace, tag),
                    _call_for(calls, slot_of(tag), namespace),
                )
            prefix, call = entity
            contributions = req.contributions
            if tpl.distinct:
                contributions = _hash_members(contributions, tpl.distinct, hasher.member)
            known = call.keys
            guard = _guard(call, contributions, tpl.guarded, guarded_in) if tpl.guarded else 0
            flat = call.flat
            # The digest only where the guard reads it: it is the longest field;
            # the event id only where a ring records it.
            ref = ev.event_id if guard and tpl.ringed else 0
            flat += (guard, ehash if guard > 0 else 0, ev.event_ms, ref, len(contributions))
            suffixes, indices = (
                tpl.in_currency(ev.currency, templates)
                if tpl.money
                else (tpl.suffixes, tpl.indices)
            )
            for index, suffix, c in zip(indices, suffixes, contributions, strict=True):
                key = prefix + suffix
                k = known.get(key)
                if k is None:
                    k = known[key] = len(known) + 1
                flat += (index, k, c)
            call.where.append((ei, tpl))
            call.reply_size += 1 + 2 * len(contributions)
    return calls


def _call_for(calls: dict[int, AggregateCall], slot: int, namespace: str) -> AggregateCall:
    """The call of a slot, made on its first entity."""
    call = calls.get(slot)
    if call is None:
        call = calls[slot] = AggregateCall(keys.event_guard(namespace, slot_tag(slot)))
    return call


def _guard(
    call: AggregateCall,
    contributions: tuple[int | str | None, ...],
    guarded: tuple[int, ...],
    guarded_in: list[AggregateCall],
) -> int:
    """A unit's guard field: 0 when it adds to no count or sum, the guard's
    key index at the event's first such unit in the call, -1 at its later ones."""
    for i in guarded:  # a plain loop: any() over a generator costs more
        if contributions[i] is not None:
            if call in guarded_in:
                return -1
            guarded_in.append(call)
            return call.kidx(call.guard)
    return 0


def _hash_members(
    contributions: tuple[int | str | None, ...],
    positions: tuple[int, ...],
    member: Callable[[str], str],
) -> tuple[int | str | None, ...]:
    """The contributions with each distinct member replaced by its keyed hash."""
    out = list(contributions)
    for i in positions:
        c = out[i]
        if c is not None:
            out[i] = member(str(c))
    return tuple(out)


def decode(
    events: Sequence[EventRequests], calls: dict[int, AggregateCall], replies: dict[int, Any]
) -> list[EventObservations]:
    """The flat replies → per event its least favourable status, one
    observation per aggregate, and the rings read for it."""
    values: list[dict[str, Observation]] = [{} for _ in events]
    counted: list[dict[str, Counted]] = [{} for _ in events]
    status = [1] * len(events)  # 1 new > 0 duplicate > -1 too old: the least wins
    for slot, call in calls.items():
        flat = replies[slot]
        _decode_call(flat, call, values, status)
        if len(flat) > call.reply_size:
            _attach(call, _reports(flat, call.reply_size), counted)
    expected = sum(len(r.contributions) for ev in events for r in ev.requests)
    if sum(len(v) for v in values) != expected:
        raise RuntimeError("aggregate script calls left requests unanswered")
    return [
        EventObservations(_STATUS[st], row, c)
        for st, row, c in zip(status, values, counted, strict=True)
    ]


def _decode_call(
    flat: list[Any], call: AggregateCall, values: list[dict[str, Observation]], status: list[int]
) -> None:
    new = tuple.__new__
    at = 0
    for ei, tpl in call.where:
        if flat[at] < status[ei]:
            status[ei] = flat[at]
        at += 1
        row = values[ei]
        for agg_id, kind, bucket_ms in tpl.layout:
            value = flat[at]
            # tuple.__new__: half the cost of calling the NamedTuple,
            # and this runs for every aggregate of every event.
            if kind == FIRST:
                row[agg_id] = new(Observation, (value, 0))
            elif value < 0:
                row[agg_id] = new(Observation, (None, 0))
            elif kind == DISTINCT:
                row[agg_id] = new(Observation, (value, flat[at + 1] + 1))
            else:
                row[agg_id] = new(Observation, (value, (flat[at + 1] + 1) * bucket_ms))
            at += 2
    if at != call.reply_size:
        raise RuntimeError(f"aggregate script answered {at} values, expected {call.reply_size}")


def _attach(
    call: AggregateCall, reports: dict[int, Counted], counted: list[dict[str, Counted]]
) -> None:
    """Each ring read to the event and aggregate whose value it follows."""
    at = 0
    for ei, tpl in call.where:
        at += 1
        for agg_id, _, _ in tpl.layout:
            found = reports.get(at)
            if found is not None:
                counted[ei][agg_id] = found
            at += 2


def _reports(flat: list[Any], start: int) -> dict[int, Counted]:
    """The rings the script read after the main answer: by the position of
    the value they go with, entries parsed from "<ms>|<event id>"."""
    out: dict[int, Counted] = {}
    at = start
    while at < len(flat):
        position, n = flat[at] - 1, flat[at + 1]  # Lua counts from 1
        entries = []
        for raw in flat[at + 2 : at + 2 + n]:
            ms, _, event_id = (raw.decode() if isinstance(raw, bytes) else raw).partition("|")
            entries.append((int(ms), event_id))
        out[position] = tuple(entries)
        at += 2 + n
    return out
