"""The watch list in the pure core: `where: {list: watch}` in the rule
language (parsed, judged against a membership predicate at event time) and
the `watch` tag on alerts."""

from __future__ import annotations

import dataclasses

import jsonschema
import pytest

from detectors import engine
from detectors.control import ListEntityType, ListEntry, ListName, Provenance
from detectors.control_snapshot import EMPTY, ControlSnapshot, fold
from detectors.control_watch import Watch
from detectors.decisions import AlertTag
from detectors.engine import Observation
from detectors.events import Order, Topic
from detectors.rulebook import parse_rulebook
from detectors.rules import Rule
from detectors.rules_lists import ListCondition
from tests.unit.test_contract_docs import published, validator
from tests.unit.test_rulebook import book, errors

T = 1_800_000_000_000
META = Provenance("c-w", "alice", "watch it", T - 1000)
ORDER = Order("e1", T, "o1", "u1", "m1", 1500, "EUR", device_id="d1")

TWIN = """\
- id: burst_watched
  version: 1
  triggers: [orders]
  entity: ENTITY
  metric: {kind: count, topics: [orders], window: 10m}
  compare: ">="
  threshold: 2
  severity: medium
"""


def twin(where: str, entity: str = "user") -> str:
    return book(TWIN.replace("ENTITY", entity) + f"  where: {where}\n")


def parse(where: str, entity: str = "user") -> Rule:
    (rule,) = parse_rulebook(twin(where, entity)).rules
    return rule


def watch(
    kind: str, entity_id: str, expires: int | None = None, removed: bool = False
) -> ListEntry:
    return ListEntry(ListName.WATCH, ListEntityType(kind), entity_id, expires, removed, META)


def snapshot(*entries: ListEntry) -> ControlSnapshot:
    return fold([(e.key(), e) for e in entries])


def test_a_rule_may_be_gated_on_the_watch_list() -> None:
    alone = parse("{list: watch}")
    assert alone.lists == (ListCondition(ListName.WATCH),) and alone.where == ()
    mixed = parse("[{field: amount_minor, op: '>', value: 0}, {list: watch}]")
    assert mixed.lists == (ListCondition(ListName.WATCH),)
    assert [c.field for c in mixed.where] == ["amount_minor"]
    assert parse("[{field: amount_minor, op: '>', value: 0}]").lists == ()


@pytest.mark.parametrize(
    ("where", "entity", "message"),
    [
        ("{list: allow}", "user", "rules[0].where.list: 'allow' is not one of watch"),
        ("[{list: block}]", "user", "rules[0].where[0].list: 'block' is not one of watch"),
        (
            "[{list: watch, op: '=='}]",
            "user",
            "rules[0].where[0]: a list condition is {list: watch}",
        ),
        ("{list: watch}", "voucher", "rules[0].where.list: the rule's entity cannot be on a list"),
        ("watch", "user", "rules[0].where: expected a list of conditions"),
    ],
)
def test_bad_list_conditions_are_refused(where: str, entity: str, message: str) -> None:
    assert any(message in e for e in errors(twin(where, entity))), errors(twin(where, entity))


def test_aggregates_cannot_be_gated_on_a_list() -> None:
    text = book(
        TWIN.replace("ENTITY", "user").replace(
            "window: 10m}", "window: 10m, where: [{list: watch}]}"
        )
    )
    (message,) = errors(text)
    assert "rules[0].metric.where[0].list: a list condition belongs in a rule's `where`" in message


def judge(rule: Rule, event: Order, control: ControlSnapshot) -> engine.AlertCandidate | None:
    observed = {s.agg_id: Observation(3, T) for s in rule.aggregates()}
    membership = Watch.of(control).membership
    return engine.evaluate(rule, Topic.ORDERS, "orders", event, observed, T, membership)


def test_a_gated_rule_judges_only_entities_on_the_list_at_the_event_time() -> None:
    rule = parse("{list: watch}")
    assert judge(rule, ORDER, EMPTY) is None
    observed = {s.agg_id: Observation(3, T) for s in rule.aggregates()}
    assert engine.evaluate(rule, Topic.ORDERS, "orders", ORDER, observed, T) is None  # no lists
    assert judge(rule, ORDER, snapshot(watch("merchant", "m1"))) is None  # not the rule's entity
    hit = judge(rule, ORDER, snapshot(watch("user", "u1", expires=T + 1)))
    assert hit is not None and hit.alert.evidence["conditions"] == ["on the watch list"]
    assert judge(rule, ORDER, snapshot(watch("user", "u1", expires=T))) is None  # expired
    later = dataclasses.replace(ORDER, occurred_at_ms=T + 1)
    assert judge(rule, later, snapshot(watch("user", "u1", expires=T + 1))) is None
    ungated = parse("[{field: amount_minor, op: '>', value: 0}]")
    assert judge(ungated, ORDER, EMPTY) is not None  # the twin's twin judges everyone


def test_a_compound_key_is_watched_when_any_of_its_entities_is() -> None:
    rule = parse("{list: watch}", entity="[user, merchant]")
    assert judge(rule, ORDER, snapshot(watch("device", "d1"))) is None
    assert judge(rule, ORDER, snapshot(watch("merchant", "m1"))) is not None
    assert judge(rule, ORDER, snapshot(watch("user", "u1"))) is not None


def test_alerts_about_a_watched_event_are_tagged() -> None:
    rule = parse("[{field: amount_minor, op: '>', value: 0}]")
    cand = judge(rule, ORDER, EMPTY)
    assert cand is not None
    assert Watch.of(EMPTY).tag_candidate(cand, ORDER) is cand
    assert "tags" not in cand.alert.to_wire()
    # The alert is about the user; the order's device is watched: tagged all the same.
    control = snapshot(watch("device", "d1"), watch("merchant", "m9"), watch("user", "u1", T))
    tagged = Watch.of(control).tag_candidate(cand, ORDER).alert
    assert tagged.tags == (AlertTag.WATCH,) and tagged.alert_id == cand.alert.alert_id
    wire = published(tagged).to_wire()  # the pipeline adds the ruleset_version
    assert wire["tags"] == ["watch"]
    assert wire["evidence"]["watched"] == [
        {
            "entity_type": "device",
            "entity_id": "d1",
            "reason": "watch it",
            "actor": "alice",
            "control_id": "c-w",
        }
    ]
    validator("risk-alerts").validate({**wire, "alert_id": "al_" + "0" * 32})
    with pytest.raises(jsonschema.ValidationError):  # the schema knows its tags
        validator("risk-alerts").validate({**wire, "alert_id": "al_" + "0" * 32, "tags": ["x"]})
    assert Watch.of(control).tag(tagged, ORDER) is tagged  # tagged once
    gone = snapshot(watch("device", "d1", removed=True), watch("merchant", "m9"))
    assert Watch.of(gone).tag(cand.alert, ORDER) is cand.alert
