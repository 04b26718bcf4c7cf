"""`fraudstream console`: the console process. The `fraudstream` command
starts here so that `stream` never imports the console: this module adds
its subcommand to stream.cli's and hands every other one over unchanged.
The console's own settings are built here, once, from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

import psycopg

from console.settings import console_from_env
from detectors.errors import ConfigError
from stream import cli
from stream.errors import ServiceError
from stream.settings import Settings

__all__ = ["CONSOLE", "cmd_console", "main"]

log = logging.getLogger("fraudstream.console")


def cmd_console(settings: Settings, args: argparse.Namespace) -> int:
    from console.app import serve
    from console.migrations import migrate

    try:
        console = console_from_env(os.environ)
    except ConfigError as exc:
        print(f"fraudstream console: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("yoyo").setLevel(logging.WARNING)  # a line per SQL statement at INFO
    try:
        applied = migrate(console.database_url)
    except psycopg.OperationalError as exc:
        raise ServiceError("postgres", f"cannot apply the migrations: {exc}") from None
    print(f"migrations: {', '.join(applied) if applied else 'schema up to date'}", flush=True)
    if args.migrate_only:
        return 0
    asyncio.run(serve(settings, console))
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--migrate-only", action="store_true", help="apply the schema migrations and exit"
    )


CONSOLE = cli.Subcommand(
    help="run the risk-ops console (schema migrations, the indexer, /livez and /readyz)",
    add_arguments=_arguments,
    run=cmd_console,
)


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, {"console": CONSOLE})


if __name__ == "__main__":
    sys.exit(main())
