"""Re-scoring merchants outside any batch: when a freeze is released as a
false positive or on appeal, and when an analyst's verdict adds or takes
back a confirmed violation. The merchant is scored at once on its ledger
as it is now, from its last snapshot's rates and as of that snapshot, and
published whatever the emit interval: an analyst sees the effect of a
decision without waiting for the merchant's next order.

A batch of the same merchant scored concurrently, on the ledger as it was
before, may publish the old points once more; the merchant's next snapshot
after the emit interval corrects it.

Verdicts are human decisions on wall-clock time, as releases are: a
backtest replays events, not them, so its scores leave them out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import orjson

from detectors.control_snapshot import ControlSnapshot
from detectors.health_bands import BandHistory
from detectors.health_model import HealthModel
from detectors.health_score import HealthInputs, Violation, ViolationSource, score
from detectors.health_wire import read_last
from detectors.verdicts import Verdict, VerdictKind
from stream.batch_outputs import BatchResult
from stream.health_feed import HealthFeed, Publish
from stream.health_records import Published, count_move, published_records
from stream.health_sources import block_listed
from stream.store.health_ledger import LedgerEntry

__all__ = [
    "Under",
    "apply_verdicts",
    "release_hook",
    "released",
    "rescore",
    "verdict_hook",
    "verdict_violation_id",
]

# The control snapshot, health model and ruleset_version to score under.
Under = tuple[ControlSnapshot, HealthModel | None, str]


async def rescore(
    feed: HealthFeed,
    merchants: Sequence[str],
    under: Under,
    now_ms: int,
    publish: Publish,
    why: str,
) -> int:
    """Each merchant re-scored and published (`why` is the snapshot's
    trigger); returns how many were published. A merchant never scored
    has no rates to re-score on and waits for its next event."""
    control, model, version = under
    if model is None or not merchants:
        return 0
    states = await feed.ledger.read(merchants, records=True)
    saves: dict[str, bytes] = {}
    histories: dict[str, BandHistory] = {}
    moves: dict[str, int] = {}
    for merchant in merchants:
        state = states[merchant]
        if state.records is None:
            continue
        last = Published.from_bytes(state.records)
        inputs = read_last(orjson.loads(last.wire))
        violations = [e.violation for e in state.violations]
        violations += block_listed(control, merchant, last.as_of_ms)
        health = HealthInputs(merchant, inputs.orders, violations, inputs.rates)
        snap = score(health, model, last.as_of_ms)
        p = published_records(snap, model, (inputs.orders, version, now_ms), (last, why))
        out = BatchResult()
        feed.publish_records(p, merchant, out)
        for o in out.outputs:
            await publish(o.topic, o.key or b"", o.value)
        saves[merchant] = p.to_bytes()
        keep = feed.keep_from(model, last.as_of_ms)
        histories[merchant] = state.bands.with_snapshot(last.as_of_ms, snap.band, keep)
        count_move(moves, last.band, snap.band)
    await feed.save(saves, moves, None, histories)
    return len(saves)


async def released(
    feed: HealthFeed, freeze_ids: Sequence[str], under: Under, now_ms: int, publish: Publish
) -> int:
    """Freezes released as false positives or on appeal: their violations go
    at once and their merchants are re-scored."""
    merchants = list(dict.fromkeys(await feed.ledger.remove(freeze_ids)))
    return await rescore(feed, merchants, under, now_ms, publish, "release:" + ",".join(freeze_ids))


def release_hook(
    feed: HealthFeed, under: Callable[[], Under], publish: Publish
) -> Callable[[str, int], Awaitable[None]]:
    """stream.releases' `on_released` for the worker: re-score at once under
    the worker's current control snapshot and rules."""

    async def on_released(freeze_id: str, now_ms: int) -> None:
        await released(feed, [freeze_id], under(), now_ms, publish)

    return on_released


def verdict_violation_id(alert_id: str) -> str:
    """One violation per alert, whatever verdicts it had: the latest stands."""
    return f"vd:{alert_id}"


async def apply_verdicts(
    feed: HealthFeed, verdicts: Sequence[Verdict], under: Under, now_ms: int, publish: Publish
) -> int:
    """Verdicts on alerts naming a merchant, in order: a true positive is a
    confirmed violation of the alert's severity, dated at the alert's event
    time; a later false positive or unsure takes it back. A freeze of the
    same alert and its verdict count once (detectors.health_score). Their
    merchants are re-scored; returns how many snapshots were published."""
    model = under[1]
    latest = {v.alert_id: v for v in verdicts if v.merchant_id}
    if model is None or not latest:
        return 0
    confirmed = [v for v in latest.values() if v.verdict is VerdictKind.TRUE_POSITIVE]
    withdrawn = [verdict_violation_id(a) for a, v in latest.items() if v not in confirmed]
    entries = [_entry(v, model) for v in confirmed]
    if withdrawn:
        await feed.ledger.remove(withdrawn)
    if entries:
        await feed.ledger.record(entries)
    merchants = list(dict.fromkeys(v.merchant_id for v in latest.values() if v.merchant_id))
    why = "verdict:" + ",".join(v.verdict_id for v in latest.values())
    return await rescore(feed, merchants, under, now_ms, publish, why)


def verdict_hook(
    feed: HealthFeed, under: Callable[[], Under], publish: Publish
) -> Callable[[Sequence[Verdict], int], Awaitable[int]]:
    """stream.verdict_follower's `apply` for the worker."""

    async def on_verdicts(verdicts: Sequence[Verdict], now_ms: int) -> int:
        return await apply_verdicts(feed, verdicts, under(), now_ms, publish)

    return on_verdicts


def _entry(v: Verdict, model: HealthModel) -> LedgerEntry:
    violation = Violation(
        verdict_violation_id(v.alert_id),
        ViolationSource.VERDICT,
        v.severity,
        v.alert_occurred_at_ms,
        (v.alert_id, v.verdict_id),
        v.rule_id,
    )
    expires = v.alert_occurred_at_ms + model.expiry_of(v.severity)
    return LedgerEntry(v.merchant_id or "", violation, model.points.get(v.severity, 0), expires)
