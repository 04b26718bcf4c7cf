"""The catalogue's rule cases (tests/unit/test_catalogue.py) through the
pipeline on either store backend: the shipped rule set fires on each
positive case and stays silent on each nearest legitimate case, exactly as
the pure reference says. On Redis this ties the unit cases to the store's
Lua (balances, surges, ages with their own retention, compound keys)."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

import orjson
import pytest

from detectors.events import Event
from detectors.health_bands import BandHistory
from detectors.timestamps import format_rfc3339_ms
from stream.codec import Incoming, SourceRecord
from stream.pipeline import Pipeline
from stream.rules_loading import load_rulebook
from tests.store_cases.backends import Stores
from tests.unit.catalogue_events import DAY, T0
from tests.unit.rule_harness import Fed
from tests.unit.test_catalogue import CASES, bands_of

NOW = T0 + 30 * DAY


def wire(event: Event) -> bytes:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if value is None:
            continue
        if f.name == "occurred_at_ms":
            out["occurred_at"] = format_rfc3339_ms(value)
        else:
            out[f.name] = value.value if isinstance(value, Enum) else value
    return orjson.dumps(out)


async def alerts_of(
    stores: Stores, rule_id: str, events: list[Fed], bands: BandHistory | None = None
) -> list[dict[str, Any]]:
    """`bands`: merchant m7's band history before the events (as earlier
    snapshots would have left it)."""
    settings = stores.settings()
    async with stores.scratch(settings) as store:
        pipeline = Pipeline(settings, store, load_rulebook(settings))
        if bands is not None:
            await store.health_ledger().save({}, {}, None, {"m7": bands})
        alerts = []
        for start in range(0, len(events), 200):
            chunk = events[start : start + 200]
            items = [
                Incoming.read(
                    topic,
                    SourceRecord(topic.value, 0, start + i, None, wire(ev), NOW),
                    settings.max_event_bytes,
                )
                for i, (topic, ev) in enumerate(chunk)
            ]
            result = await pipeline.process_mixed(items, NOW)
            assert not result.dead_letters
            alerts += [
                orjson.loads(o.value) for o in result.outputs if o.topic == settings.topics.alerts
            ]
        return [a for a in alerts if a["rule_id"] == rule_id]


class CatalogueCases:
    @pytest.mark.parametrize("rule_id", sorted(CASES))
    async def test_shipped_rule_through_the_store(self, stores: Stores, rule_id: str) -> None:
        positive, negative = CASES[rule_id]
        history, judged = positive()
        fired = await alerts_of(stores, rule_id, history + judged, bands_of(rule_id, 0))
        assert fired, "silent on its positive case"
        history, judged = negative()
        assert await alerts_of(stores, rule_id, history + judged, bands_of(rule_id, 1)) == []
