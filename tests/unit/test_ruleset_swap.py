"""Rules swapped between batches by a `ruleset` record, on the in-memory
store: a batch is judged, from prepare to conclude, under the rule set it
was prepared under, and its decisions say which."""

from __future__ import annotations

import orjson

from detectors.control import KillSwitch, ListEntityType, ListEntry, ListName, Switch
from detectors.control_snapshot import EMPTY, fold
from detectors.events import Topic
from detectors.rulebook import parse_rulebook
from stream.active_rules import RulesSource
from stream.codec import Incoming, SourceRecord
from stream.enforcement_guard import EnforcementGuard
from stream.pipeline import BatchResult, Pipeline
from stream.settings import Settings
from stream.store.memory_store import MemoryStore
from stream.store_wiring import store_config
from tests.integration.services import TEST_KEY_HASH_SECRET, order_json
from tests.unit.test_enforcement_guard import CountingStore, at, order
from tests.unit.test_ruleset_record import META, RULES, record, rule_block

SETTINGS = Settings(key_hash_secret=TEST_KEY_HASH_SECRET)
NOW = 1_900_000_000_000
# The file's `burst` (3 orders, alert) tightened, and a new freezing rule on
# an aggregate nobody kept before (orders per device).
PUBLISHED = RULES.replace("threshold: 3", "threshold: 100") + rule_block(
    "device_pair", "device", 2, "{type: benefit_freeze, scope: vouchers, duration: 1d}"
)


def pipeline() -> Pipeline:
    return Pipeline(SETTINGS, MemoryStore(store_config(SETTINGS)), parse_rulebook(RULES))


class Orders:
    def __init__(self) -> None:
        self.offset = 0

    def batch(self, user: str, count: int, device: str = "d-0") -> list[Incoming]:
        out = []
        for _ in range(count):
            self.offset += 1
            at = f"2026-11-02T12:00:{self.offset:02d}Z"
            value = order_json(f"e{self.offset}", user, at, device_id=device)
            record = SourceRecord("orders", 0, self.offset, b"m-1", value, NOW)
            out.append(Incoming.read(Topic.ORDERS, record, SETTINGS.max_event_bytes))
        return out


def fired(result: BatchResult) -> list[tuple[str, str]]:
    """(rule, ruleset_version) of each alert and freeze."""
    return [
        (value.get("rule_id", ""), value["ruleset_version"])
        for value in (orjson.loads(o.value) for o in result.outputs)
    ]


async def test_a_published_rule_fires_on_the_next_batch_and_decisions_carry_its_version() -> None:
    p, orders = pipeline(), Orders()
    file_version = parse_rulebook(RULES).digest
    assert p.rules().source is RulesSource.FILE and p.rules().version == file_version
    before = await p.process_mixed(orders.batch("u1", 3, device="d-1"), NOW)
    assert fired(before) == [("burst", file_version)]

    published = record(PUBLISHED)
    p.control = fold([("ruleset", published)])
    after = await p.process_mixed(orders.batch("u2", 3, device="d-2"), NOW)
    version = published.ruleset_version
    # burst needs 100 now; device_pair alerts and freezes, both stamped.
    assert sorted(fired(after)) == [("device_pair", version), ("device_pair", version)]
    assert [f.ruleset_version for f in after.freezes] == [version]
    assert p.rules().source is RulesSource.CONTROL and p.rules().version == version

    p.control = EMPTY  # a tombstone on `ruleset`: back to the rules file
    assert p.rules().version == file_version


async def test_a_batch_is_concluded_under_the_rules_it_was_prepared_under() -> None:
    """The backtest prepares batch k+1 before concluding k (stream.overlap)."""
    p, orders = pipeline(), Orders()
    first = p.prepare(orders.batch("u1", 3), NOW)
    p.control = fold([("ruleset", record(PUBLISHED))])
    second = p.prepare(orders.batch("u2", 3), NOW)
    concluded = await p.conclude(first, await p.observe(first), NOW)
    assert fired(concluded) == [("burst", parse_rulebook(RULES).digest)]  # not 100 yet
    assert first.rules is not None and second.rules is not None
    assert [r.rule_id for r in second.rules.rulebook.rules] == ["burst", "device_pair"]


async def test_the_plan_is_built_once_per_record() -> None:
    p = pipeline()
    snapshot = fold([("ruleset", record(PUBLISHED))])
    p.control = snapshot
    active = p.rules()
    # Another control change keeps the same record object, so the same plan.
    p.control = fold([("kill-switch", KillSwitch(Switch.ON, META))], snapshot)
    assert p.rules() is active
    # An equal record read again is another object: planned again, same rules.
    p.control = fold([("ruleset", record(PUBLISHED))], snapshot)
    assert p.rules() is not active and p.rules().version == active.version


async def test_block_list_alerts_carry_the_version_too() -> None:
    p, orders = pipeline(), Orders()
    entry = ListEntry(ListName.BLOCK, ListEntityType.USER, "mule", None, False, META)
    p.control = fold([(entry.key(), entry), ("ruleset", record(PUBLISHED))])
    result = await p.process_mixed(orders.batch("mule", 1, device="d-9"), NOW)
    assert fired(result) == [("control:block-list", record(PUBLISHED).ruleset_version)]


async def test_the_guard_follows_the_rule_set_in_effect() -> None:
    """Active merchants (the breaker's denominator) are counted only while a
    rule can freeze funds: a published rule that can must start the count."""
    p, seen = pipeline(), []
    p.guard.follow = lambda rules: seen.append([r.rule_id for r in rules])  # type: ignore[method-assign]
    p.control = fold([("ruleset", record(PUBLISHED))])
    assert p.rules() is p.rules() and seen == [["burst", "device_pair"]]
    p.control = EMPTY
    p.rules()
    assert seen == [["burst", "device_pair"], ["burst"]]

    store, clock = CountingStore(), [0.0]
    guard = EnforcementGuard(SETTINGS, store, parse_rulebook(RULES).rules, clock=lambda: clock[0])
    funds = RULES.replace(
        "action: alert", "action: {type: fund_freeze, scope: payouts, duration: 1d}"
    )
    for rules, expected in ((RULES, []), (funds, [["m1"], ["m2"]])):
        guard.follow(parse_rulebook(rules).rules)
        clock[0] += 10.0
        await guard.note_merchants([order("a", "m1", at(1))])
        clock[0] += 10.0
        await guard.note_merchants([order("b", "m2", at(1))])
        assert [merchants for _, merchants in store.counting.noted] == expected
