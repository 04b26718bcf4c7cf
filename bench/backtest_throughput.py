"""Backtest throughput on a generated 30k-event file (default rule set, real Redis).

Usage: .venv/bin/python -m bench backtest [--events 30000] [--runs 3]
Needs a Redis at FRAUD_REDIS_URL (e.g. after `python -m devenv up`). Prints
each run and the median events/s; the baseline in the same run is a pass
over the same file that only decodes and validates (no Redis, no rules).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from detectors.contract import validate_event
from detectors.events import Topic
from detectors.timestamps import format_rfc3339_ms
from stream.backtest import run_backtest
from stream.gc_tuning import tune_for_streaming
from stream.rules_loading import load_rulebook
from stream.settings import Settings

T0 = 1_790_000_000_000


def generate(n: int, path: Path, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("wb") as fh:
        for i in range(n):
            t = format_rfc3339_ms(T0 + i * 500)
            user, merchant = f"u{rng.randrange(3000)}", f"m{rng.randrange(300)}"
            kind = rng.random()
            if kind < 0.75:
                value = {"event_id": f"e{i}", "occurred_at": t, "order_id": f"o{i}",
                         "user_id": user, "merchant_id": merchant,
                         "amount_minor": rng.randrange(500, 9000), "currency": "EUR",
                         "device_id": f"d{rng.randrange(2500)}"}
                topic = "orders"
            elif kind < 0.9:
                value = {"event_id": f"e{i}", "occurred_at": t, "redemption_id": f"r{i}",
                         "voucher_id": "v", "user_id": user, "merchant_id": merchant,
                         "face_value_minor": 1000, "subsidy_minor": 400, "currency": "EUR",
                         "device_id": f"d{rng.randrange(2500)}"}
                topic = "voucher-redemptions"
            elif kind < 0.97:
                value = {"event_id": f"e{i}", "occurred_at": t, "refund_id": f"f{i}",
                         "order_id": f"o{i - 5}", "user_id": user, "merchant_id": merchant,
                         "amount_minor": 700, "currency": "EUR"}
                topic = "refunds"
            else:
                value = {"event_id": f"e{i}", "occurred_at": t, "payout_id": f"p{i}",
                         "merchant_id": merchant, "amount_minor": rng.randrange(1000, 900000),
                         "currency": "EUR", "destination_fingerprint": f"iban-{merchant}"}
                topic = "payouts"
            fh.write(orjson.dumps({"topic": topic, "value": value}) + b"\n")


def baseline(path: Path) -> float:
    started = time.perf_counter()
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            doc = orjson.loads(line)
            validate_event(Topic(doc["topic"]), orjson.loads(orjson.dumps(doc["value"])))
            n += 1
    return n / (time.perf_counter() - started)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--runs", type=int, default=3)


def run(settings: Settings, args: argparse.Namespace) -> int:
    rulebook = load_rulebook(settings)
    tune_for_streaming()  # as `fraudstream backtest` does
    with tempfile.TemporaryDirectory() as tmp:
        events, out = Path(tmp) / "events.jsonl", Path(tmp) / "decisions.jsonl"
        generate(args.events, events)
        rates, bases = [], []
        for i in range(args.runs):
            summary = asyncio.run(run_backtest(settings, rulebook, events, out, None))
            rate = summary.events / summary.seconds
            base = baseline(events)
            rates.append(rate)
            bases.append(base)
            print(f"run {i + 1}: backtest {rate:,.0f} events/s, "
                  f"decode-only baseline {base:,.0f} events/s, outputs {summary.outputs}")
        med, med_base = statistics.median(rates), statistics.median(bases)
        print(f"median: backtest {med:,.0f} events/s over {args.events} events, "
              f"{len(rulebook.rules)} rules; decode-only {med_base:,.0f} events/s "
              f"(ratio {med / med_base:.2f})")
    return 0
