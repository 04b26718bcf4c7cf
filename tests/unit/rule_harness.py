"""A brute-force reference for judging rules on short, in-order event lists.

It recomputes every aggregate from the full event history with the store's
documented window semantics (count/sum: the window of whole buckets ending at
the event's bucket, a sum over events in the judged event's currency only;
distinct: values last seen in (t - window, t]; first seen: the earliest
contribution), then calls the real `engine.evaluate`. The
Redis store is checked against the same semantics by the property tests in
tests/integration/test_redis_store.py, so a rule that behaves here behaves
live.
"""

from __future__ import annotations

from collections.abc import Sequence

from detectors import engine
from detectors.aggregates import AggregateKind, AggregateSpec
from detectors.decisions import AlertCandidate
from detectors.engine import Observation
from detectors.events import Event, Order, Payout, Refund, Topic
from detectors.health_bands import BandLookup, no_bands
from detectors.paid_out import RETAIN_MS, PaidOutAnswer, with_paid_out
from detectors.rules import Rule

Fed = tuple[Topic, Event]


def observe(spec: AggregateSpec, seen: Sequence[Fed], event: Event) -> Observation | None:
    ids = spec.entity_ids(event)
    if ids is None:
        return None
    contributions = []
    for topic, other in seen:
        if spec.entity_ids(other) != ids:
            continue
        if spec.per_currency and other.currency != event.currency:
            continue
        value = spec.contribution(topic, other)
        if value is not None:
            contributions.append((other.occurred_at_ms, value))
    t = event.occurred_at_ms
    if spec.kind is AggregateKind.FIRST_SEEN:
        return Observation(min((at for at, _ in contributions), default=-1), 0)
    assert spec.window_ms is not None
    if spec.kind is AggregateKind.DISTINCT:
        last: dict[object, int] = {}
        for at, value in contributions:
            last[value] = max(at, last.get(value, at))
        alive = [v for v, at in last.items() if t - spec.window_ms < at <= t]
        return Observation(len(alive), t + 1)
    assert spec.bucket_ms is not None
    end = (t // spec.bucket_ms + 1) * spec.bucket_ms
    start = end - spec.window_ms
    total = sum(int(v) for at, v in contributions if start <= at < end)
    return Observation(total, end)


def paid_out(seen: Sequence[Fed], refund: Refund) -> Refund:
    """The refund as the pipeline marks it (detectors.paid_out), from the
    merchant's orders and payouts among `seen`, recomputed from scratch."""
    horizon = refund.occurred_at_ms - RETAIN_MS
    mine = [e for _, e in seen if getattr(e, "merchant_id", None) == refund.merchant_id]
    placed = [
        e.occurred_at_ms for e in mine if isinstance(e, Order) and e.order_id == refund.order_id
    ]
    paid = [
        e.occurred_at_ms
        for e in mine
        if isinstance(e, Payout) and horizon <= e.occurred_at_ms <= refund.occurred_at_ms
    ]
    order_at = placed[0] if placed and placed[0] >= horizon else None
    return with_paid_out(refund, PaidOutAnswer(order_at, max(paid, default=None)))


def judge(
    rule: Rule, history: Sequence[Fed], judged: Sequence[Fed] = (), bands: BandLookup = no_bands
) -> list[AlertCandidate]:
    """Feed `history` (not judged: cheap set-up), then feed and judge each of
    `judged` in order. Events must be in event-time order; refunds are marked
    paid out or not as the pipeline marks them. `bands`: the merchants'
    health bands, as the pipeline looks them up."""
    times = [e.occurred_at_ms for _, e in [*history, *judged]]
    assert times == sorted(times), "the reference judges in-order events only"
    seen: list[Fed] = []
    for topic, event in history:
        seen.append((topic, paid_out(seen, event) if isinstance(event, Refund) else event))
    out = []
    for topic, event in judged:
        if isinstance(event, Refund):
            event = paid_out(seen, event)
        seen.append((topic, event))
        observed = {}
        for spec in rule.aggregates():
            obs = observe(spec, seen, event)
            if obs is not None:
                observed[spec.agg_id] = obs
        at_ms = event.occurred_at_ms
        candidate = engine.evaluate(rule, topic, topic.value, event, observed, at_ms, bands=bands)
        if candidate is not None:
            out.append(candidate)
    return out
