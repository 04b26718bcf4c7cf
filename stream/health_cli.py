"""`fraudstream health MERCHANT_ID`: a merchant's current health snapshot (the
last one published on `merchant-health`) with its explanation, and the
violations on its record, read through the store's ledger
(stream.store.health_ledger), never from raw keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import IO, Any

import orjson

from detectors.durations import format_duration_ms
from detectors.timestamps import format_rfc3339_ms
from stream.health_records import stored_snapshot
from stream.settings import Settings
from stream.store.health_ledger import MerchantHealthState
from stream.store_wiring import open_store

__all__ = ["add_arguments", "format_snapshot", "read_state", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("merchant_id")
    parser.add_argument("--json", action="store_true", help="the snapshot as published (JSON)")


async def read_state(settings: Settings, merchant_id: str) -> MerchantHealthState:
    store = open_store(settings)
    try:
        return (await store.health_ledger().read([merchant_id], records=True))[merchant_id]
    finally:
        await store.close()


def run(settings: Settings, args: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    """0 with the snapshot; 1 when the merchant has none (never scored, or
    another namespace or key hash secret)."""
    state = asyncio.run(read_state(settings, args.merchant_id))
    snapshot = stored_snapshot(state)
    if snapshot is None:
        print(
            f"no health snapshot for merchant {args.merchant_id!r} in namespace "
            f"{settings.redis_namespace!r} (not seen since its rules had a health section, "
            "or another FRAUD_KEY_HASH_SECRET)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        out.write(orjson.dumps(snapshot, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(format_snapshot(snapshot, state))
    return 0


def _component(c: Mapping[str, Any]) -> str:
    window = format_duration_ms(int(c["window_ms"]))
    if c["name"] == "violations":
        what = f"{c['numerator']} active"
    elif c["value"] is None:
        what = f"not judged: {c['numerator']} of {c['denominator']} is below its minimum volume"
    else:
        what = f"{c['value']:.1%} ({c['numerator']} of {c['denominator']}, {window})"
    return f"  {c['name']:<24} {what:<52} -{c['points']}"


def format_snapshot(snapshot: Mapping[str, Any], state: MerchantHealthState) -> str:
    volume = snapshot["volume"]
    lines = [
        f"merchant {snapshot['merchant_id']}: score {snapshot['score']}/1000, "
        f"band {snapshot['band']}",
        f"  as of {snapshot['as_of']} (event time), computed at {snapshot['computed_at']}",
        f"  health model {snapshot['score_model_version']}, "
        f"ruleset_version {snapshot['ruleset_version']}",
        f"  volume: {volume['orders']} orders in {format_duration_ms(volume['window_ms'])} "
        f"(scored from {volume['min_orders']})",
        "components (points taken off 1000):",
        *(_component(c) for c in snapshot["components"]),
        "reasons:" if snapshot["reasons"] else "reasons: none",
    ]
    for i, r in enumerate(snapshot["reasons"], start=1):
        evidence = ", ".join(r["evidence"]) or "-"
        lines.append(f"  {i}. -{r['points']} {r['text']}; evidence: {evidence}")
    lines.append(f"violations on record: {len(state.violations) or 'none'}")
    for e in state.violations:
        v = e.violation
        lines.append(
            f"  {v.violation_id} {v.source.value} {v.severity.value} ({e.points} points) "
            f"at {format_rfc3339_ms(v.at_ms)}, until {format_rfc3339_ms(e.expires_at_ms)}"
            + (f", rule {v.rule_id}" if v.rule_id else "")
        )
    return "\n".join(lines) + "\n"
