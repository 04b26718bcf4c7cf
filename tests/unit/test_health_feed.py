"""Merchant health fed by the pipeline (stream.health_feed) on the in-memory
store: snapshots at a merchant's events, a freeze of the merchant as a
violation, its release as a false positive taking it back at once, the
emit rule in event time, batch boundaries that change nothing, and a batch
redone after a crash republishing the same records."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from detectors.control import ListEntry, Provenance
from detectors.control_snapshot import fold
from detectors.events import Topic
from detectors.list_names import ListEntityType, ListName
from detectors.rulebook import Rulebook
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms
from stream.codec import Incoming, SourceRecord
from stream.health_cli import format_snapshot
from stream.health_records import stored_snapshot
from stream.health_rescore import released
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from stream.store.memory_store import MemoryStore
from tests.integration.services import order_json
from tests.store_cases.pipeline import NOW, at, on, records
from tests.store_cases.requests import process

RULES = """\
ruleset: health-test
ruleset_version: "1"
health:
  score_model_version: h-test
  min_orders: 3
  emit_interval: 1m
rules:
  - id: merchant_order_burst
    version: 1
    triggers: [orders]
    entity: merchant
    metric: {kind: count, topics: [orders], window: 10m}
    compare: ">="
    threshold: 5
    severity: critical
    action: {type: fund_freeze, scope: payouts, duration: 3d}
"""
SETTINGS = Settings()
SCHEMAS = Path(__file__).resolve().parents[2] / "contract" / "schemas"
HEALTH, CHANGES = SETTINGS.topics.merchant_health, SETTINGS.topics.merchant_health_changes


def load_schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = orjson.loads((SCHEMAS / f"{name}.schema.json").read_bytes())
    return loaded


@pytest.fixture
def rulebook(tmp_path: Path) -> Rulebook:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return load_rulebook(SETTINGS.replace(rules_file=path))


def orders(n: int, first: int = 0, merchant: str = "m-1") -> list[bytes]:
    """One order a minute from 12:00."""
    return [order_json(f"o{i}", f"u{i}", at(i), merchant) for i in range(first, first + n)]


async def run(rulebook: Rulebook, batches: list[list[bytes]]) -> tuple[Pipeline, list[Any]]:
    pipeline = Pipeline(SETTINGS, MemoryStore(), rulebook)
    outputs, offset = [], 0
    for values in batches:
        result = await process(pipeline, Topic.ORDERS, records(values, first_offset=offset), NOW)
        outputs += result.outputs
        offset += len(values)
    return pipeline, outputs


def without_clock(records_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "computed_at"} for r in records_]


async def test_a_freeze_costs_its_points_from_its_trigger_and_bands_change(
    rulebook: Rulebook,
) -> None:
    _, outputs = await run(rulebook, [orders(6)])
    snaps = on(outputs, HEALTH)
    assert [(s["as_of"][11:16], s["score"], s["band"]) for s in snaps] == [
        ("12:00", 1000, "insufficient_data"),  # the first snapshot of a merchant
        ("12:02", 1000, "healthy"),  # its third order passes the volume gate
        ("12:04", 600, "at_risk"),  # the fifth order froze it: critical, 400 points
    ]
    (freeze,) = on(outputs, SETTINGS.topics.fund_freezes)
    frozen = snaps[-1]
    assert frozen["reasons"][0]["evidence"] == [freeze["freeze_id"], freeze["reason_alert_id"]]
    assert frozen["components"][0] == {
        "name": "violations", "value": None, "numerator": 1, "denominator": 1,
        "window_ms": 90 * 86_400_000, "points": 400,
    }  # fmt: skip
    assert frozen["volume"] == {"orders": 5, "min_orders": 3, "window_ms": 30 * 86_400_000}
    assert frozen["score_model_version"] == "h-test" and frozen["ruleset_version"] == (
        rulebook.digest
    )
    changes = on(outputs, CHANGES)
    assert [(c["previous_band"], c["band"]) for c in changes] == [
        (None, "insufficient_data"),
        ("insufficient_data", "healthy"),
        ("healthy", "at_risk"),
    ]
    assert all(o.key == b"m-1" for o in outputs if o.topic in (HEALTH, CHANGES))


async def test_batch_boundaries_change_no_snapshot(rulebook: Rulebook) -> None:
    _, whole = await run(rulebook, [orders(8)])
    _, one_by_one = await run(rulebook, [[v] for v in orders(8)])
    _, uneven = await run(rulebook, [orders(3), orders(4, 3), orders(1, 7)])
    expected = without_clock(on(whole, HEALTH))
    assert len(expected) == 3
    assert without_clock(on(one_by_one, HEALTH)) == expected == without_clock(on(uneven, HEALTH))


async def test_a_false_positive_release_restores_the_score_at_once(rulebook: Rulebook) -> None:
    pipeline, outputs = await run(rulebook, [orders(6)])
    (freeze,) = on(outputs, SETTINGS.topics.fund_freezes)
    published: list[tuple[str, bytes, bytes]] = []

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        published.append((topic, key, value))

    under = pipeline.health_under()
    n = await released(pipeline.health, [freeze["freeze_id"]], under, NOW + 5, publish)
    assert n == 1
    (snap,) = [orjson.loads(v) for t, _, v in published if t == HEALTH]
    assert (snap["score"], snap["band"], snap["reasons"]) == (1000, "healthy", [])
    assert snap["as_of"] == on(outputs, HEALTH)[-1]["as_of"]  # as of its last snapshot
    (change,) = [orjson.loads(v) for t, _, v in published if t == CHANGES]
    assert (change["previous_band"], change["band"]) == ("at_risk", "healthy")
    # The merchant's next events are scored without it.
    more = records(orders(2, 10), first_offset=6)
    later = await process(pipeline, Topic.ORDERS, more, NOW)
    assert [s["score"] for s in on(later.outputs, HEALTH)] == []  # unchanged: nothing to say
    state = await pipeline.health.ledger.read(["m-1"])
    assert state["m-1"].violations == ()


async def test_a_redone_batch_republishes_the_same_snapshot(rulebook: Rulebook) -> None:
    pipeline, first = await run(rulebook, [orders(6)])
    again = await process(pipeline, Topic.ORDERS, records(orders(6)), NOW + 1)
    assert [o for o in again.outputs if o.topic == HEALTH] == [
        [o for o in first if o.topic == HEALTH][-1]
    ]


async def test_a_block_listed_merchant_counts_as_a_violation_while_listed(
    rulebook: Rulebook,
) -> None:
    pipeline = Pipeline(SETTINGS, MemoryStore(), rulebook)
    meta = Provenance("ctl-1", "alice", "chargeback ring", NOW - 10**9)
    entry = ListEntry(ListName.BLOCK, ListEntityType.MERCHANT, "m-1", None, False, meta)
    pipeline.control = fold([(entry.key(), entry)], pipeline.control)
    result = await process(pipeline, Topic.ORDERS, records(orders(1)), NOW)
    (snap,) = on(result.outputs, HEALTH)
    assert (snap["score"], snap["band"]) == (800, "healthy")  # high: 200 points
    assert snap["reasons"][0]["evidence"] == ["ctl-1"]  # the list entry's control id


async def test_without_a_health_section_nothing_is_scored(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        RULES.replace(
            "health:\n  score_model_version: h-test\n  min_orders: 3\n  emit_interval: 1m\n", ""
        )
    )
    _, outputs = await run(load_rulebook(SETTINGS.replace(rules_file=path)), [orders(6)])
    assert on(outputs, HEALTH) == [] and on(outputs, CHANGES) == []


async def test_the_cli_explains_the_stored_snapshot(rulebook: Rulebook) -> None:
    pipeline, outputs = await run(rulebook, [orders(6)])
    (freeze,) = on(outputs, SETTINGS.topics.fund_freezes)
    state = (await pipeline.health.ledger.read(["m-1"], records=True))["m-1"]
    snapshot = stored_snapshot(state)
    assert snapshot == on(outputs, HEALTH)[-1]
    text = format_snapshot(snapshot, state)
    assert text.startswith("merchant m-1: score 600/1000, band at_risk\n")
    assert f"1. -400 critical freeze by rule merchant_order_burst ({freeze['freeze_id']})" in text
    assert "  refund_rate              not judged: 0 of 5 is below its minimum volume " in text
    assert "  violations               1 active " in text
    assert f"{freeze['freeze_id']} freeze critical (400 points) at 2026-11-02T12:04" in text


def test_published_records_match_their_schemas() -> None:
    for name in ("merchant-health", "merchant-health-changes"):
        jsonschema.Draft202012Validator.check_schema(load_schema(name))


async def test_every_published_record_is_valid(rulebook: Rulebook) -> None:
    _, outputs = await run(rulebook, [orders(8)])
    for topic, name in ((HEALTH, "merchant-health"), (CHANGES, "merchant-health-changes")):
        validator = jsonschema.Draft202012Validator(load_schema(name))
        found = on(outputs, topic)
        assert found
        for record in found:
            validator.validate(record)
        assert not validator.is_valid({**found[0], "band": "great"})


async def test_merchants_are_counted_per_band_of_their_last_snapshot(rulebook: Rulebook) -> None:
    seen: list[dict[str, int]] = []
    pipeline = Pipeline(SETTINGS, MemoryStore(), rulebook)
    pipeline.health.on_bands = lambda counts: seen.append(dict(counts))
    values = orders(6) + orders(3, 10, merchant="m-2")
    for i, v in enumerate(values):  # one event per batch: every move is counted
        await process(pipeline, Topic.ORDERS, records([v], first_offset=i), NOW)
    nonzero = {band: n for band, n in seen[-1].items() if n}
    assert nonzero == {"at_risk": 1, "healthy": 1}
    assert seen[0] == {"insufficient_data": 1}


class AllSettled:
    """Every record redelivered after its outputs were delivered (stream.delivery)."""

    async def settled(self, admitted: list[Any]) -> frozenset[Any]:
        return frozenset(d.record.position for d in admitted)


async def test_records_delivered_before_a_redelivery_are_not_scored_again(
    rulebook: Rulebook,
) -> None:
    pipeline, _ = await run(rulebook, [orders(6)])
    pipeline.settled = AllSettled()  # type: ignore[assignment]
    again = await process(pipeline, Topic.ORDERS, records(orders(6)), NOW + 1)
    assert on(again.outputs, HEALTH) == []  # a redone batch would republish its last one


async def test_alerts_naming_the_merchant_count_per_order_and_age_out(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("emit_interval: 1m\n", ALERT_RATE))
    pipeline, outputs = await run(load_rulebook(SETTINGS.replace(rules_file=path)), [orders(6)])
    frozen = on(outputs, HEALTH)[-1]
    (rate,) = [c for c in frozen["components"] if c["name"] == "alert_rate"]
    assert (rate["numerator"], rate["denominator"], rate["points"]) == (1, 5, 200)
    assert (frozen["score"], frozen["band"]) == (400, "critical")  # freeze 400, alerts 200
    state = (await pipeline.health.ledger.read(["m-1"]))["m-1"]
    assert [a for a, _ in state.alerts] == frozen["reasons"][0]["evidence"][1:]
    forty_days = order_json("late", "u", "2026-12-12T12:00:00Z")  # beyond the 30-day window
    await process(pipeline, Topic.ORDERS, records([forty_days], first_offset=6), NOW)
    assert (await pipeline.health.ledger.read(["m-1"]))["m-1"].alerts == ()


ALERT_RATE = "emit_interval: 1m\n  rates: {alert_rate: {min_volume: 5}}\n"


def mixed_traffic(seed: int) -> list[Incoming]:
    """Orders and refunds (by users and by merchants) of four merchants over
    two hours, in event-time order; bursts freeze and alert."""
    rng = random.Random(seed)
    out: list[Incoming] = []
    t = parse_rfc3339_ms("2026-11-02T10:00:00Z")
    for n in range(300):
        t += rng.choice([5_000, 20_000, 70_000])
        merchant = f"m-{rng.randrange(4)}"
        value = orjson.loads(order_json(f"e{n}", f"u{n % 7}", format_rfc3339_ms(t), merchant))
        topic, name = Topic.ORDERS, "orders"
        if rng.random() < 0.3:
            by = rng.choice(["user", "merchant"])
            value |= {"refund_id": f"rf{n}", "initiated_by": by}
            topic, name = Topic.REFUNDS, "refunds"
        record = SourceRecord(name, 0, n, merchant.encode(), orjson.dumps(value), NOW)
        out.append(Incoming.read(topic, record, 4096))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_any_batching_of_mixed_traffic_publishes_the_same_records(
    tmp_path: Path, seed: int
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.replace("emit_interval: 1m\n", MIXED_RATES))
    rulebook = load_rulebook(SETTINGS.replace(rules_file=path))
    items, rng = mixed_traffic(seed), random.Random(seed)
    published = []
    for split in ([len(items)], [1] * len(items), [rng.randrange(1, 40) for _ in items]):
        pipeline, outputs, at = Pipeline(SETTINGS, MemoryStore(), rulebook), [], 0
        for size in split:
            if at >= len(items):
                break
            outputs += (await pipeline.process_mixed(items[at : at + size], NOW)).outputs
            at += size
        published.append([without_clock(on(outputs, t)) for t in (HEALTH, CHANGES)])
    assert published[0] == published[1] == published[2]
    snapshots = published[0][0]
    assert len({s["band"] for s in snapshots}) >= 3 and any(s["reasons"] for s in snapshots)
    names = {c["name"] for s in snapshots for c in s["components"] if c["points"]}
    assert {"violations", "refund_rate", "merchant_refund_rate", "alert_rate"} <= names


MIXED_RATES = (
    "emit_interval: 1m\n  rates: {refund_rate: {min_volume: 5},"
    " merchant_refund_rate: {min_volume: 5}, alert_rate: {min_volume: 5}}\n"
)
