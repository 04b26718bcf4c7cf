"""`fraudstream simulate`: write a labelled stream of marketplace traffic.

    fraudstream simulate --out FILE.jsonl [--labels FILE.json] [--seed N]
        [--scale K] [--start YYYY-MM-DD] [--days D] [--to-kafka]

The events file is backtest input (`fraudstream backtest FILE.jsonl ...`);
the labels file is what a scorer compares the decisions with.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path

from stream.settings import Settings
from stream.simulation.generator import simulate
from stream.simulation.labels import write_labels
from stream.simulation.model import DEFAULT_START_MS, MIN_DAYS, SimulationConfig

__all__ = ["add_arguments", "run"]


def _start_day(text: str) -> int:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None
    return int(day.timestamp()) * 1000


def _positive_scale(text: str) -> float:
    try:
        scale = float(text)
    except ValueError:
        scale = 0.0
    if not scale > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return scale


def _days(text: str) -> int:
    if not text.isdigit() or int(text) < MIN_DAYS:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {MIN_DAYS}, got {text!r}")
    return int(text)


def _merchants(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="events file to write (JSONL)")
    parser.add_argument("--labels", help="also write the scenario labels (JSON) here")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--scale",
        type=_positive_scale,
        default=1.0,
        help="population multiplier (1: 300 merchants, 4,000 users)",
    )
    parser.add_argument(
        "--start", type=_start_day, default=DEFAULT_START_MS, help="first day, UTC (2026-11-01)"
    )
    parser.add_argument("--days", type=_days, default=8)
    parser.add_argument(
        "--merchants",
        type=_merchants,
        default=0,
        help="also N merchants of each health archetype (good, sloppy, deteriorating, fraudulent)",
    )
    parser.add_argument(
        "--to-kafka", action="store_true", help="also publish to the configured input topics"
    )


def run(settings: Settings, args: argparse.Namespace) -> int:
    config = SimulationConfig(
        seed=args.seed,
        scale=args.scale,
        start_ms=args.start,
        days=args.days,
        merchants=args.merchants,
    )
    result = simulate(config)
    out = Path(args.out)
    out.write_bytes(result.jsonl())
    if args.labels:
        write_labels(result.labels, args.labels)
    print(f"{result.summary()} -> {out}", flush=True)
    if args.to_kafka:
        from stream.simulation.publish import publish

        sent = asyncio.run(publish(settings, result.timeline))
        print(f"published {sent} events to {settings.kafka_bootstrap}")
    return 0
