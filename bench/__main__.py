"""`python -m bench live | floor | direct | backtest | redis | console-lag`: the benchmarks.
Settings are built here, once, from the environment (the same `FRAUD_*`
variables as the product's); `live` starts the local services it needs."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from bench import backtest_throughput, redis_script
from devenv import services
from stream.cli import Command, run_command
from stream.settings import Settings


def cmd_live(settings: Settings, args: argparse.Namespace) -> int:
    from bench.live import dumps, report, run_bench

    layout = services.layout_of(settings)
    redis_port, (_, kafka_port) = services.redis_port(settings), settings.kafka_host_port()
    # Use running services as they are; start the local ones only when absent.
    if not services.port_open("127.0.0.1", redis_port):
        services.start_redis(layout, redis_port)
    if not services.port_open("127.0.0.1", kafka_port):
        services.start_kafka(layout, kafka_port)
    events = 20_000 if args.quick else args.events
    latency_s = 8.0 if args.quick else args.duration
    layout.home.mkdir(parents=True, exist_ok=True)
    print(f"bench: {events} events, latency phase {latency_s:.0f}s", flush=True)
    # The worker subprocess inherits this environment (PATH, ...) plus the bench's own FRAUD_*.
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    result = asyncio.run(
        run_bench(services.with_local_secret(settings), events, latency_s, layout.home, base_env)
    )
    print(report(result))
    if args.json:
        Path(args.json).write_bytes(dumps(result))
    return 0


def cmd_floor(settings: Settings, args: argparse.Namespace) -> int:
    from bench.floor import run

    run(settings, args.events)
    return 0


def cmd_floor_batch(settings: Settings, args: argparse.Namespace) -> int:
    from bench.floor import run

    run(settings, args.events, batches=True)
    return 0


def cmd_direct(settings: Settings, args: argparse.Namespace) -> int:
    from bench.direct import run

    run(settings, args.events)
    return 0


def cmd_console_lag(settings: Settings, args: argparse.Namespace) -> int:
    """The console indexer's lag at a steady alert rate, on the local
    services (started when absent, like `live`) and a database of its own."""
    from bench.console_lag import dumps, report, run_lag_bench
    from console.settings import console_from_env
    from devenv import postgres

    layout = services.layout_of(settings)
    _, kafka_port = settings.kafka_host_port()
    pg_port = console_from_env(os.environ).database_port()
    if not services.port_open("127.0.0.1", kafka_port):
        services.start_kafka(layout, kafka_port)
    postgres.start_postgres(layout, pg_port, "postgres")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    result = asyncio.run(
        run_lag_bench(
            settings, pg_port, args.rate, args.seconds, layout.home, base_env, args.preload
        )
    )
    print(report(result))
    if args.json:
        Path(args.json).write_bytes(dumps(result))
    return 0


COMMANDS: dict[str, Command] = {
    "live": cmd_live,
    "floor": cmd_floor,
    "floor-batch": cmd_floor_batch,
    "direct": cmd_direct,
    "backtest": backtest_throughput.run,
    "redis": redis_script.run,
    "console-lag": cmd_console_lag,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    live = sub.add_parser("live", help="throughput and latency of a worker on local Kafka + Redis")
    live.add_argument("--quick", action="store_true", help="20k events, 8 s latency phase")
    live.add_argument("--events", type=int, default=100_000)
    live.add_argument("--duration", type=float, default=60.0, help="latency phase seconds")
    live.add_argument("--json", help="write the result as JSON to this file")
    floor = sub.add_parser("floor", help="(run by live) faust with no-op agents")
    floor.add_argument("events", type=int)
    floor_batch = sub.add_parser("floor-batch", help="(run by live) the floor, batch delivery")
    floor_batch.add_argument("events", type=int)
    direct = sub.add_parser(
        "direct", help="(run by live) the pipeline on a plain aiokafka consumer"
    )
    direct.add_argument("events", type=int)
    backtest = sub.add_parser("backtest", help="backtest throughput on generated events")
    backtest_throughput.add_arguments(backtest)
    redis = sub.add_parser(
        "redis", help="Redis script time and commands per event (private redis-server, no Kafka)"
    )
    redis_script.add_arguments(redis)
    lag = sub.add_parser("console-lag", help="the console indexer's lag behind risk-alerts")
    lag.add_argument("--rate", type=int, default=500, help="alerts per second")
    lag.add_argument("--seconds", type=float, default=30.0)
    lag.add_argument("--preload", type=int, default=0, help="older alerts in the table first")
    lag.add_argument("--json", help="write the numbers as JSON to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("bench", COMMANDS, args, quiet=args.command not in ("floor", "direct"))


if __name__ == "__main__":
    sys.exit(main())
