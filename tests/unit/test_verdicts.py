"""Analysts' verdicts (detectors.verdicts): the `risk-verdicts` contract, and
what a verdict does to a merchant's health (stream.health_rescore) and how
the worker reads them (stream.verdict_follower), on the in-memory store."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson
import pytest

from detectors.errors import ContractViolation, StoreUnavailable
from detectors.rulebook import Rulebook
from detectors.rules import Severity
from detectors.rules_entities import EntityType
from detectors.timestamps import parse_rfc3339_ms
from detectors.verdicts import Verdict, VerdictKind, parse_verdict, verdict_id_for
from stream.health_rescore import apply_verdicts
from stream.verdict_follower import VerdictFollower
from tests.store_cases.pipeline import at
from tests.unit.test_health_feed import HEALTH, SETTINGS, load_schema, orders, run
from tests.unit.test_health_feed import rulebook as rulebook

T = parse_rfc3339_ms(at(1))  # the second of the merchant's orders: alerted then


def verdict(kind: VerdictKind = VerdictKind.TRUE_POSITIVE, alert: int = 1, **kw: Any) -> Verdict:
    fields: dict[str, Any] = {
        "verdict_id": verdict_id_for(f"click-{alert}-{kind.value}"),
        "alert_id": f"al_{alert:032x}",
        "verdict": kind,
        "rule_id": "merchant_refund_rate_24h",
        "severity": Severity.HIGH,
        "entity_type": EntityType.MERCHANT,
        "entity_id": "m-1",
        "merchant_id": "m-1",
        "alert_occurred_at_ms": T,
        "actor": "alice",
        "decided_at_ms": T + 3_600_000,
        "note": "<script>refunds to a ring</script>",
    }
    fields.update(kw)
    return Verdict(**fields)


def test_a_verdict_survives_its_wire_and_matches_its_schema() -> None:
    v = verdict()
    wire = orjson.loads(v.to_bytes())
    jsonschema.validate(wire, load_schema("risk-verdicts"))
    assert parse_verdict(v.to_bytes()) == v
    assert parse_verdict(verdict(merchant_id=None).to_bytes()).merchant_id is None
    assert verdict_id_for("k") == verdict_id_for("k") != verdict_id_for("k2")


@pytest.mark.parametrize(
    ("change", "kind", "field"),
    [
        ({"verdict": "maybe"}, "bad_enum", "verdict"),
        ({"alert_id": "al_1"}, "bad_format", "alert_id"),
        ({"actor": None}, "missing_field", "actor"),
        ({"actor": 7}, "wrong_type", "actor"),
        ({"decided_at": "yesterday"}, "bad_time", "decided_at"),
        ({"note": "x" * 2001}, "out_of_range", "note"),
        ({"verdikt": "true_positive"}, "unknown_field", "verdikt"),
        ({"schema_version": 2}, "bad_enum", "schema_version"),
    ],
)
def test_a_bad_verdict_is_refused_naming_its_field(
    change: dict[str, Any], kind: str, field: str
) -> None:
    wire = {**verdict().to_wire(), **change}
    with pytest.raises(ContractViolation) as caught:
        parse_verdict(orjson.dumps(wire))
    assert (caught.value.kind, caught.value.field) == (kind, field)
    with pytest.raises(ContractViolation) as caught:
        parse_verdict(b"[1, 2]")
    assert caught.value.kind == "not_an_object"


class Published:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []

    async def __call__(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append((topic, key, value))

    def scores(self) -> list[int]:
        return [orjson.loads(v)["score"] for t, _, v in self.records if t == HEALTH]


async def test_a_true_positive_costs_points_until_taken_back(rulebook: Rulebook) -> None:
    pipeline, _ = await run(rulebook, [orders(4)])  # healthy, nothing frozen yet
    under, publish = pipeline.health_under(), Published()
    assert await apply_verdicts(pipeline.health, [verdict()], under, T, publish) == 1
    later = [verdict(VerdictKind.UNSURE, decided_at_ms=T + 7_200_000)]
    assert await apply_verdicts(pipeline.health, later, under, T, publish) == 1
    assert publish.scores() == [1000 - 200, 1000]  # a high-severity violation, then none
    again = [verdict(), verdict(VerdictKind.FALSE_POSITIVE)]  # the latest in a batch stands
    await apply_verdicts(pipeline.health, again, under, T, publish)
    assert publish.scores()[-1] == 1000
    state = (await pipeline.health.ledger.read(["m-1"]))["m-1"]
    assert state.violations == ()


async def test_a_verdict_on_a_frozen_alert_does_not_count_twice(rulebook: Rulebook) -> None:
    pipeline, outputs = await run(rulebook, [orders(6)])
    (freeze,) = [orjson.loads(o.value) for o in outputs if o.topic == SETTINGS.topics.fund_freezes]
    confirmed = verdict(alert_id=freeze["reason_alert_id"], severity=Severity.CRITICAL)
    publish = Published()
    await apply_verdicts(pipeline.health, [confirmed], pipeline.health_under(), T, publish)
    assert publish.scores() == [600]  # the freeze's 400 points, once
    other = verdict(alert=2, merchant_id="m-unknown", entity_id="m-unknown")
    assert await apply_verdicts(pipeline.health, [other], pipeline.health_under(), T, publish) == 0
    no_merchant = verdict(alert=3, merchant_id=None, entity_type=EntityType.USER)
    assert (
        await apply_verdicts(pipeline.health, [no_merchant], pipeline.health_under(), T, publish)
        == 0
    )


class Message:
    def __init__(self, offset: int, value: bytes) -> None:
        self.topic, self.partition, self.offset = SETTINGS.topics.verdicts, 0, offset
        self.key, self.value, self.timestamp = b"al", value, T


async def test_the_follower_dead_letters_bad_records_and_retries_a_down_store() -> None:
    applied: list[list[Verdict]] = []
    failures = [StoreUnavailable("health.record", OSError("down"))]

    async def apply(verdicts: Any, now_ms: int) -> int:
        if failures:
            raise failures.pop()
        applied.append(list(verdicts))
        return 1

    publish = Published()
    follower = VerdictFollower(SETTINGS, apply, publish, clock=lambda: T / 1000, retry_s=0)
    await follower.handle(
        [Message(0, verdict().to_bytes()), Message(1, b'{"schema_version": 1, "verdict": 1}')]
    )
    assert applied == [[verdict()]] and (follower.applied, follower.rejected) == (1, 1)
    ((topic, _, value),) = publish.records
    letter = orjson.loads(value)
    assert topic == SETTINGS.topics.dlq and letter["offset"] == 1
    assert letter["error"] == {
        "kind": "missing_field",
        "field": "verdict_id",
        "message": "required",
    }
