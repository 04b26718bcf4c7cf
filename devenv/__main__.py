"""`python -m devenv install | up | down | status | demo`: the local services
and the demo. Settings are built here, once, from the environment (the same
`FRAUD_*` variables as the product's)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from console.settings import ConsoleSettings, console_from_env
from devenv import browser, postgres, services, tools
from stream.cli import Command, run_command
from stream.settings import Settings
from stream.topics import create_all_topics


def cmd_install(settings: Settings, args: argparse.Namespace) -> int:
    print(f"redis-server: {services.ensure_redis_server()}")
    print(f"kafka jars: {services.ensure_kafka_jars(services.layout_of(settings))}")
    print(f"postgres: {postgres.ensure_postgres()}")
    if args.with_prometheus:
        print(f"promtool: {services.ensure_prometheus()}")
    if args.with_chromium:
        print(f"chromium: {browser.ensure_chromium()}")
    if args.with_helm:
        print(f"helm: {tools.ensure_helm()}", flush=True)
    return 0


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    layout = services.layout_of(settings)
    redis_port = services.redis_port(settings)
    _, kafka_port = settings.kafka_host_port()
    print(f"redis: pid {services.start_redis(layout, redis_port)} on 127.0.0.1:{redis_port}")
    print("kafka: checking (the first start fetches the jars with Maven) ...", flush=True)
    print(f"kafka: pid {services.start_kafka(layout, kafka_port)} on 127.0.0.1:{kafka_port}")
    console = _console()
    port, database = console.database_port(), console.database_name()
    print(f"postgres: pid {postgres.start_postgres(layout, port, database)} on 127.0.0.1:{port}")
    asyncio.run(create_all_topics(settings))
    names = [*settings.topics.inputs().values(), *settings.topics.outputs()]
    print(f"topics: {', '.join(names)}")
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    layout = services.layout_of(settings)
    stopped = {**services.down(layout), "postgres": postgres.stop_postgres(layout)}
    for name, was_running in stopped.items():
        print(f"{name}: {'stopped' if was_running else 'was not running'}")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    layout = services.layout_of(settings)
    _, kafka_port = settings.kafka_host_port()
    for name, state in services.status(layout, kafka_port, services.redis_port(settings)).items():
        print(f"{name}: {state}")
    print(f"postgres: {postgres.status_postgres(layout, _console().database_port())}")
    return 0


def _console() -> ConsoleSettings:
    """The console's settings: where its Postgres listens."""
    return console_from_env(os.environ)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from devenv.demo import run_demo

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    return run_demo(services.with_local_secret(settings), base_env)


COMMANDS: dict[str, Command] = {
    "install": cmd_install,
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "demo": cmd_demo,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devenv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser(
        "install", help="redis-server, the Kafka jars and PostgreSQL, if missing"
    )
    install.add_argument(
        "--with-prometheus", action="store_true", help="also Prometheus and promtool"
    )
    install.add_argument(
        "--with-chromium",
        action="store_true",
        help="also Chromium, for the console's browser tests",
    )
    install.add_argument(
        "--with-helm", action="store_true", help="also Helm, built with Go at a pinned version"
    )
    sub.add_parser("up", help="start local Kafka, Redis and PostgreSQL and create the topics")
    sub.add_parser("down", help="stop them")
    sub.add_parser("status", help="are they running")
    sub.add_parser("demo", help="up, run a worker, send sample events, print decisions")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("devenv", COMMANDS, args, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
