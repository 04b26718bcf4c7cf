"""The `fraudstream` command. Settings are built here, once, from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from detectors.errors import ConfigError, FraudstreamError, InputFileError
from stream.control_cli import add_arguments as add_control_arguments
from stream.errors import ServiceError
from stream.gc_tuning import tune_for_streaming
from stream.health_cli import add_arguments as health_arguments
from stream.settings import Settings, from_env
from stream.simulation import command as simulation_command

__all__ = [
    "COMMANDS",
    "Command",
    "Subcommand",
    "build_parser",
    "cmd_backtest",
    "cmd_contract",
    "cmd_health",
    "cmd_replay",
    "cmd_rules",
    "cmd_score",
    "cmd_simulate",
    "cmd_topics",
    "cmd_worker",
    "main",
    "run_command",
]

log = logging.getLogger("fraudstream")


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from stream.faust_wiring import faust_worker
    from stream.worker import Worker

    log.info("starting worker with %r", settings)
    worker = Worker(settings)
    tune_for_streaming()
    faust_worker(worker.app, settings.log_level).execute_from_commandline()
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    """Create every fraudstream topic that is missing (docker-compose's init job)."""
    from stream.topics import create_all_topics

    deadline = time.monotonic() + args.wait
    while True:
        try:
            asyncio.run(create_all_topics(settings))
            break
        except Exception as exc:  # broker still starting: retry until --wait runs out
            if time.monotonic() > deadline:
                raise ServiceError("kafka", f"cannot create topics: {exc}") from exc
            time.sleep(2)
    print("topics ready")
    return 0


def cmd_contract(settings: Settings, args: argparse.Namespace) -> int:
    from stream.contract_docs import write_schemas

    for path in write_schemas(Path(args.dir)):
        print(path)
    return 0


def cmd_rules(settings: Settings, args: argparse.Namespace) -> int:
    from detectors.rulebook import RulebookError, parse_rulebook

    path = Path(args.file)
    try:
        book = parse_rulebook(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        print(f"{path}: cannot read: {exc}", file=sys.stderr)
        return 2
    except RulebookError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"{path}: OK — ruleset {book.name} {book.version}, {len(book.rules)} rules, "
        f"{len(book.aggregates())} aggregates, ruleset_version {book.digest}"
    )
    for rule in book.rules:
        currencies = rule.currencies
        scope = "" if currencies is None else f" — money rule: {', '.join(currencies)} only"
        print(
            f"  {rule.rule_id} v{rule.version} [{rule.mode.value}] {rule.action.kind.value}{scope}"
        )
    return 0


def cmd_backtest(settings: Settings, args: argparse.Namespace) -> int:
    from detectors.control_snapshot import EMPTY
    from stream.backtest import run_backtest
    from stream.control_cli import describe_snapshot, load_control
    from stream.rules_loading import load_rulebook

    if args.rules:
        settings = settings.replace(rules_file=Path(args.rules))
    rulebook = load_rulebook(settings)
    control = load_control(Path(args.control)) if args.control else EMPTY
    tune_for_streaming()
    summary = asyncio.run(
        run_backtest(
            settings,
            rulebook,
            Path(args.events),
            Path(args.out),
            None if args.quiet else sys.stderr,
            control=control,
        )
    )
    if args.control:
        print(f"control snapshot {args.control}: {describe_snapshot(control)}")
    print(summary.table())
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    from stream.replay import parse_since, run_replay
    from stream.rules_loading import load_rulebook

    since = parse_since(args.since, int(time.time() * 1000))
    tune_for_streaming()
    summary = asyncio.run(
        run_replay(settings, load_rulebook(settings), since, None if args.quiet else sys.stderr)
    )
    print(
        f"replayed {summary.records} records from {summary.partitions} partitions "
        f"in {summary.seconds:.1f}s; Redis state rebuilt up to the committed offsets"
    )
    return 0


def cmd_control(settings: Settings, args: argparse.Namespace) -> int:
    from stream import control_cli

    return control_cli.run(settings, args)


def cmd_health(settings: Settings, args: argparse.Namespace) -> int:
    from stream import health_cli

    return health_cli.run(settings, args)


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    return simulation_command.run(settings, args)


def cmd_score(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when the run meets the acceptance bar, 1 when not (for CI);
    with verdicts as labels, 0 once they are read."""
    import orjson

    if args.verdicts or args.verdicts_topic:
        return _score_verdicts(settings, args)
    if not (args.labels and args.decisions):
        print("fraudstream score: LABELS and DECISIONS, or --verdicts", file=sys.stderr)
        return 2

    from stream.health_scoring import format_confusion, health_confusion, read_snapshots
    from stream.scoring import as_json, format_score, score_files
    from stream.simulation.labels import LabelsError, load_labels

    try:
        result = score_files(Path(args.labels), Path(args.decisions))
        merchants = load_labels(Path(args.labels)).merchants
    except (LabelsError, InputFileError, OSError) as exc:
        print(f"fraudstream score: {exc}", file=sys.stderr)
        return 2
    print(format_score(result))
    if merchants:  # labels with health archetypes: how the bands separate them
        snapshots = read_snapshots(Path(args.decisions))
        print(format_confusion(health_confusion(merchants, snapshots)))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(as_json(result), option=orjson.OPT_INDENT_2))
    return 0 if result.acceptable() else 1


def _score_verdicts(settings: Settings, args: argparse.Namespace) -> int:
    """Per-rule precision from analysts' verdicts, from a file of verdict
    records (one JSON per line) or the verdict topic itself."""
    import orjson

    from stream import kafka_io
    from stream.kafka_security import aiokafka_security
    from stream.verdict_scoring import (
        format_verdict_scores,
        read_verdict_file,
        read_verdict_lines,
        verdict_scores,
        verdict_scores_json,
    )

    try:
        if args.verdicts:
            verdicts, errors = read_verdict_file(Path(args.verdicts))
        else:
            topic, options = settings.topics.verdicts, aiokafka_security(settings.kafka_security)
            found = asyncio.run(
                kafka_io.read_from(settings.kafka_bootstrap, topic, client_options=options)
            )
            verdicts, errors = read_verdict_lines(r.value or b"" for r in found)
    except (OSError, LookupError) as exc:
        print(f"fraudstream score: {exc}", file=sys.stderr)
        return 2
    rows = verdict_scores(verdicts)
    print(format_verdict_scores(rows, errors))
    if args.json:
        doc = orjson.dumps(verdict_scores_json(rows), option=orjson.OPT_INDENT_2)
        Path(args.json).write_bytes(doc)
    return 0


@dataclass(frozen=True, slots=True)
class Subcommand:
    """A subcommand of a package `stream` does not import (the console),
    added by that package's own entry point."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Command


def build_parser(extra: Mapping[str, Subcommand] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run the stream worker (Faust) against Kafka and Redis")
    topics = sub.add_parser("topics", help="create missing input/output topics")
    topics.add_argument("--wait", type=float, default=120.0, help="seconds to wait for Kafka")
    rules = sub.add_parser("rules", help="validate a rule file")
    rules.add_argument("action", choices=["check"])
    rules.add_argument("file")
    backtest = sub.add_parser("backtest", help="replay a JSONL event file through the rules")
    backtest.add_argument("events")
    backtest.add_argument("--out", required=True)
    backtest.add_argument("--rules", help="rule file (default: FRAUD_RULES_FILE or built-in)")
    backtest.add_argument("--quiet", action="store_true", help="no progress lines")
    backtest.add_argument(
        "--control", help="a saved control snapshot (`control show --json > FILE`)"
    )
    replay = sub.add_parser("replay", help="rebuild Redis state from Kafka after it was lost")
    replay.add_argument("--since", required=True, help="RFC 3339 time, or a duration like 36h")
    replay.add_argument("--quiet", action="store_true")
    simulate = sub.add_parser("simulate", help="write labelled marketplace traffic (JSONL)")
    simulation_command.add_arguments(simulate)
    score = sub.add_parser(
        "score", help="score decisions against simulation labels, or rules by analysts' verdicts"
    )
    score.add_argument("labels", nargs="?", help="labels file from `simulate --labels`")
    score.add_argument("decisions", nargs="?", help="decision lines, e.g. from `backtest --out`")
    score.add_argument("--json", help="also write the scores as JSON to this file")
    score.add_argument(
        "--verdicts", help="verdict records (JSON lines) as labels: precision per rule"
    )
    score.add_argument(
        "--verdicts-topic", action="store_true", help="the same, read from the verdict topic"
    )
    control = sub.add_parser("control", help="steer running workers (kill switch, modes, lists)")
    add_control_arguments(control)
    contract = sub.add_parser("contract", help="write the input JSON Schemas")
    contract.add_argument("dir", nargs="?", default="contract/schemas")
    for name, spec in (extra or {}).items():
        spec.add_arguments(sub.add_parser(name, help=spec.help))
    health = sub.add_parser("health", help="a merchant's current health snapshot, explained")
    health_arguments(health)
    return parser


Command = Callable[[Settings, argparse.Namespace], int]

COMMANDS: dict[str, Command] = {
    "worker": cmd_worker,
    "topics": cmd_topics,
    "rules": cmd_rules,
    "backtest": cmd_backtest,
    "replay": cmd_replay,
    "contract": cmd_contract,
    "simulate": cmd_simulate,
    "score": cmd_score,
    "control": cmd_control,
    "health": cmd_health,
}


def run_command(
    prog: str, commands: Mapping[str, Command], args: argparse.Namespace, quiet: bool
) -> int:
    """Build the settings from the environment, set up logging and run
    `args.command`; fraudstream's errors become exit codes, not tracebacks.
    `quiet` keeps the Kafka libraries at WARNING (a worker logs at its level).
    Shared with the repository's own tools (`devenv`, `bench`), which are
    entry points too."""
    try:
        settings = from_env(os.environ)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if quiet:
        for noisy in ("aiokafka", "faust", "mode"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return commands[args.command](settings, args)
    except FraudstreamError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None, extra: Mapping[str, Subcommand] | None = None) -> int:
    args = build_parser(extra).parse_args(argv)
    commands = {**COMMANDS, **{name: spec.run for name, spec in (extra or {}).items()}}
    return run_command("fraudstream", commands, args, quiet=args.command != "worker")


if __name__ == "__main__":
    sys.exit(main())
