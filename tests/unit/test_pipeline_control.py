"""The control plane's effects through the whole pipeline (decode → store →
rules → control → incidents → outputs) on the in-memory store: what the
live worker and the backtest both run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from detectors.control import (
    ControlRecord,
    KillSwitch,
    ListEntityType,
    ListEntry,
    ListName,
    Provenance,
    RuleMode,
    RuleModeSetting,
    Snooze,
    Switch,
)
from detectors.control_effects import BLOCK_LIST_RULE, Silence
from detectors.control_snapshot import fold
from detectors.decisions import Suppression
from detectors.events import Topic
from detectors.timestamps import parse_rfc3339_ms
from stream.pipeline import BatchResult, Pipeline
from stream.rules_loading import load_rulebook
from stream.settings import Settings
from tests.integration.services import order_json
from tests.store_cases.backends import Stores
from tests.store_cases.pipeline import NOW, at, on, records
from tests.store_cases.requests import process

# `burst` freezes a user's vouchers at 4 orders in 10 minutes; its twin
# alerts at 2 already, for watched users only.
RULES = """\
rules:
  - id: burst
    version: 1
    triggers: [orders]
    entity: user
    metric: {kind: count, topics: [orders], window: 10m}
    compare: ">="
    threshold: 4
    severity: high
    action: {type: benefit_freeze, scope: vouchers, duration: 1d}
  - id: burst_watched
    version: 1
    triggers: [orders]
    entity: user
    metric: {kind: count, topics: [orders], window: 10m}
    compare: ">="
    threshold: 2
    severity: medium
    where: {list: watch}
"""
META = Provenance("c-1", "alice", "drill", parse_rfc3339_ms(at(0)) - 60_000)


class Env(NamedTuple):
    settings: Settings
    pipeline: Pipeline


@pytest.fixture
async def env(stores: Stores, tmp_path: Path) -> AsyncIterator[Env]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    settings = stores.settings(rules_file=rules)
    async with stores.scratch(settings) as store:
        yield Env(settings, Pipeline(settings, store, load_rulebook(settings)))


def steer(env: Env, *control: ControlRecord) -> None:
    env.pipeline.control = fold([(r.key(), r) for r in control])


def listed(name: ListName, user: str) -> ListEntry:
    return ListEntry(name, ListEntityType.USER, user, None, False, META)


async def orders(env: Env, user: str, minutes: list[int]) -> BatchResult:
    """One batch of orders by `user` at those minutes past noon (event time)."""
    values = [order_json(f"{user}-{m}", user, at(m)) for m in minutes]
    first = sum(ord(c) for c in user) * 100 + minutes[0]  # distinct offsets per user
    return await process(env.pipeline, Topic.ORDERS, records(values, first_offset=first), NOW)


def alerts(env: Env, result: BatchResult) -> list[dict[str, Any]]:
    return on(result.outputs, env.settings.topics.alerts)


def freezes(env: Env, result: BatchResult) -> list[dict[str, Any]]:
    return on(result.outputs, env.settings.topics.benefit_freezes)


async def test_without_control_burst_alerts_and_freezes(env: Env) -> None:
    result = await orders(env, "plain", [0, 1, 2, 3])
    (alert,) = alerts(env, result)
    assert alert["rule_id"] == "burst" and "tags" not in alert and "suppressed_by" not in alert
    assert len(freezes(env, result)) == 1  # and the twin judged nobody: no one is watched


async def test_an_allow_listed_entity_gets_no_alert_and_no_freeze(env: Env) -> None:
    steer(env, listed(ListName.ALLOW, "vip"))
    result = await orders(env, "vip", [0, 1, 2, 3, 4])
    assert alerts(env, result) == [] and freezes(env, result) == []
    assert result.silenced == {Silence.ALLOW_LIST: 2}  # counted, each crossing


async def test_a_snoozed_entity_is_silent_until_expiry_in_event_time(env: Env) -> None:
    until = parse_rfc3339_ms(at(5))
    steer(env, Snooze(ListEntityType.USER, "sleepy", None, until, META))
    quiet = await orders(env, "sleepy", [0, 1, 2, 3, 4])
    assert alerts(env, quiet) == [] and freezes(env, quiet) == []
    assert quiet.silenced == {Silence.SNOOZE: 2}
    woken = await orders(env, "sleepy", [5, 6])  # at and after the expiry
    (alert,) = alerts(env, woken)
    assert alert["rule_id"] == "burst" and alert["trigger_event_id"] == "sleepy-5"
    assert len(freezes(env, woken)) == 1


async def test_a_block_listed_entity_alerts_on_every_event_without_a_freeze(env: Env) -> None:
    steer(env, listed(ListName.BLOCK, "mule"))
    result = await orders(env, "mule", [0, 1])  # below every threshold
    block = alerts(env, result)
    assert [a["rule_id"] for a in block] == [BLOCK_LIST_RULE] * 2
    assert [a["trigger_event_id"] for a in block] == ["mule-0", "mule-1"]
    assert freezes(env, result) == [] and result.block_list_alerts == 2


async def test_a_rule_forced_to_shadow_alerts_marked_and_never_freezes(env: Env) -> None:
    steer(env, RuleMode("burst", RuleModeSetting.SHADOW, META))
    result = await orders(env, "shady", [0, 1, 2, 3])
    (alert,) = alerts(env, result)
    assert alert["mode"] == "shadow" and freezes(env, result) == []
    assert result.suppressed == {Suppression.RULE_SHADOW: 1}


async def test_the_kill_switch_marks_alerts_and_holds_every_freeze(env: Env) -> None:
    steer(env, KillSwitch(Switch.ON, META))
    result = await orders(env, "killed", [0, 1, 2, 3])
    (alert,) = alerts(env, result)
    assert alert["suppressed_by"] == "kill_switch" and alert["mode"] == "enforce"
    assert freezes(env, result) == [] and result.suppressed == {Suppression.KILL_SWITCH: 1}


async def test_watched_entities_are_tagged_and_judged_by_the_gated_twin(env: Env) -> None:
    steer(env, listed(ListName.WATCH, "watched"), listed(ListName.BLOCK, "watched"))
    result = await orders(env, "watched", [0, 1, 2, 3])
    by_rule: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts(env, result):
        by_rule.setdefault(alert["rule_id"], []).append(alert)
    assert sorted((r, len(a)) for r, a in by_rule.items()) == [
        ("burst", 1),
        ("burst_watched", 1),
        (BLOCK_LIST_RULE, 4),
    ]
    (twin,) = by_rule["burst_watched"]
    assert twin["trigger_event_id"] == "watched-1" and twin["observed"] == 2
    assert twin["evidence"]["conditions"] == ["on the watch list"]
    every = [a for group in by_rule.values() for a in group]
    assert all(a["tags"] == ["watch"] for a in every)
    assert {a["evidence"]["watched"][0]["entity_id"] for a in every} == {"watched"}
    assert len(freezes(env, result)) == 1  # watching changes no enforcement


async def test_the_list_gates_the_decision_not_the_counting(env: Env) -> None:
    """Orders before the entity was put on the watch list still count: it
    is judged at once on its recent history."""
    assert alerts(env, await orders(env, "late", [0])) == []
    steer(env, listed(ListName.WATCH, "late"))
    (alert,) = alerts(env, await orders(env, "late", [1]))
    assert alert["rule_id"] == "burst_watched" and alert["observed"] == 2
    steer(env)  # taken off the list: the twin stops judging, the count goes on
    assert alerts(env, await orders(env, "late", [2])) == []
    (burst,) = alerts(env, await orders(env, "late", [3]))
    assert burst["rule_id"] == "burst" and burst["observed"] == 4 and "tags" not in burst
