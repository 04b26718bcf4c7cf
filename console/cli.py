"""`fraudstream console`: the console process. The `fraudstream` command
starts here so that `stream` never imports the console: this module adds
its subcommand to stream.cli's and hands every other one over unchanged.
The console's own settings are built here, once, from the environment."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from typing import TextIO

import psycopg

from console.settings import console_from_env
from console.users import hash_password, load_users
from detectors.errors import ConfigError
from stream import cli
from stream.errors import ServiceError
from stream.settings import Settings

__all__ = ["CONSOLE", "cmd_console", "cmd_hash_password", "main", "read_password"]

log = logging.getLogger("fraudstream.console")


def read_password(stdin: TextIO) -> str:
    """From a terminal: asked twice, unechoed. Piped: the first line."""
    if stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the two passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")


def cmd_hash_password(stdin: TextIO) -> int:
    """Prints an argon2id hash of the password read from stdin (for the
    users file); the password itself is never printed."""
    try:
        print(hash_password(read_password(stdin)))
    except ValueError as exc:
        print(f"fraudstream console hash-password: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_console(settings: Settings, args: argparse.Namespace) -> int:
    from console.app import serve
    from console.migrations import migrate

    if args.action == "hash-password":
        return cmd_hash_password(sys.stdin)
    try:
        console = console_from_env(os.environ)
        if console.users_file is not None:
            load_users(console.users_file)  # checked before the migrations run
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
        "action",
        nargs="?",
        choices=("run", "hash-password"),
        default="run",
        help="run the console (the default), or hash a password read from stdin for the users file",
    )
    parser.add_argument(
        "--migrate-only", action="store_true", help="apply the schema migrations and exit"
    )


CONSOLE = cli.Subcommand(
    help="run the risk-ops console (schema migrations, the indexer, the pages, /livez and "
    "/readyz), or hash a password for its users file",
    add_arguments=_arguments,
    run=cmd_console,
)


def main(argv: list[str] | None = None) -> int:
    return cli.main(argv, {"console": CONSOLE})


if __name__ == "__main__":
    sys.exit(main())
