"""The `fraudstream` command. Settings are built here, once, from the environment."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from detectors.errors import ConfigError, FraudstreamError, InputFileError, ServiceError
from stream import devservices
from stream.gc_tuning import tune_for_streaming
from stream.settings import Settings, from_env
from stream.simulation import command as simulation_command

log = logging.getLogger("fraudstream")


def _layout(settings: Settings) -> devservices.DevLayout:
    return devservices.DevLayout(
        home=settings.dev_home,
        jar_cache=Path.home() / ".cache" / "fraudstream" / "kafka-jars",
    )


def _redis_port(settings: Settings) -> int:
    from urllib.parse import urlsplit

    return urlsplit(settings.redis_url).port or 6379


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from stream.faust_wiring import faust_worker
    from stream.worker import Worker

    log.info("starting worker with %r", settings)
    worker = Worker(settings)
    tune_for_streaming()
    faust_worker(worker.app, settings.log_level).execute_from_commandline()
    return 0


def cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    layout = _layout(settings)
    _, kafka_port = settings.kafka_host_port()
    redis_port = _redis_port(settings)
    if args.action == "install":
        print(f"redis-server: {devservices.ensure_redis_server()}")
        print(f"kafka jars: {devservices.ensure_kafka_jars(layout)}")
        if args.with_prometheus:
            print(f"promtool: {devservices.ensure_prometheus()}")
    elif args.action == "up":
        print(f"redis: pid {devservices.start_redis(layout, redis_port)} on 127.0.0.1:{redis_port}")
        print("kafka: checking (the first start fetches the jars with Maven) ...", flush=True)
        print(f"kafka: pid {devservices.start_kafka(layout, kafka_port)} on 127.0.0.1:{kafka_port}")
        create_all_topics(settings)
        names = [*settings.topics.inputs().values(), *settings.topics.outputs()]
        print(f"topics: {', '.join(names)}")
    elif args.action == "down":
        for name, stopped in devservices.down(layout).items():
            print(f"{name}: {'stopped' if stopped else 'was not running'}")
    else:
        for name, state in devservices.status(layout, kafka_port, redis_port).items():
            print(f"{name}: {state}")
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    """Create every fraudstream topic that is missing (docker-compose's init job)."""
    deadline = time.monotonic() + args.wait
    while True:
        try:
            create_all_topics(settings)
            break
        except Exception as exc:  # broker still starting: retry until --wait runs out
            if time.monotonic() > deadline:
                raise ServiceError("kafka", f"cannot create topics: {exc}") from exc
            time.sleep(2)
    print("topics ready")
    return 0


def create_all_topics(settings: Settings) -> None:
    topics = settings.topics
    asyncio.run(
        devservices.create_topics(
            settings.kafka_bootstrap,
            list(topics.inputs().values()),
            settings.dev_partitions,
            devservices.INPUT_TOPIC_MAX_BYTES,
        )
    )
    asyncio.run(
        devservices.create_topics(
            settings.kafka_bootstrap, topics.outputs(), settings.dev_partitions
        )
    )


def _local_secret(settings: Settings) -> Settings:
    """Commands that run against the local services use their own key hash
    secret unless one is set."""
    if settings.key_hash_secret is not None:
        return settings
    return settings.replace(key_hash_secret=devservices.dev_key_hash_secret(_layout(settings)))


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from stream.demo import run_demo

    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    return run_demo(_local_secret(settings), _layout(settings), _redis_port(settings), base_env)


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
        f"{len(book.aggregates())} aggregates"
    )
    for rule in book.rules:
        currencies = rule.currencies
        scope = "" if currencies is None else f" — money rule: {', '.join(currencies)} only"
        print(
            f"  {rule.rule_id} v{rule.version} [{rule.mode.value}] {rule.action.kind.value}{scope}"
        )
    return 0


def cmd_backtest(settings: Settings, args: argparse.Namespace) -> int:
    from stream.backtest import run_backtest
    from stream.rules_loading import load_rulebook

    if args.rules:
        settings = settings.replace(rules_file=Path(args.rules))
    rulebook = load_rulebook(settings)
    tune_for_streaming()
    summary = asyncio.run(
        run_backtest(
            settings,
            rulebook,
            Path(args.events),
            Path(args.out),
            None if args.quiet else sys.stderr,
        )
    )
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


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    from stream.bench import dumps, report, run_bench

    layout = _layout(settings)
    # Use running services as they are; start the local ones only when absent.
    if not devservices.port_open("127.0.0.1", _redis_port(settings)):
        devservices.start_redis(layout, _redis_port(settings))
    if not devservices.port_open("127.0.0.1", settings.kafka_host_port()[1]):
        devservices.start_kafka(layout, settings.kafka_host_port()[1])
    events = 20_000 if args.quick else args.events
    latency_s = 8.0 if args.quick else args.duration
    layout.home.mkdir(parents=True, exist_ok=True)
    print(f"bench: {events} events, latency phase {latency_s:.0f}s", flush=True)
    # The worker subprocess inherits this environment (PATH, ...) plus the bench's own FRAUD_*.
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUD_")}
    result = asyncio.run(
        run_bench(_local_secret(settings), events, latency_s, layout.home, base_env)
    )
    print(report(result))
    if args.json:
        Path(args.json).write_bytes(dumps(result))
    return 0


def cmd_bench_floor(settings: Settings, args: argparse.Namespace) -> int:
    from stream.bench_floor import run

    run(settings, args.events)
    return 0


def cmd_bench_direct(settings: Settings, args: argparse.Namespace) -> int:
    from stream.bench_direct import run

    run(settings, args.events)
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    return simulation_command.run(settings, args)


def cmd_score(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 when the run meets the acceptance bar, 1 when not (for CI)."""
    import orjson

    from stream.scoring import as_json, format_score, score_files
    from stream.simulation.labels import LabelsError

    try:
        result = score_files(Path(args.labels), Path(args.decisions))
    except (LabelsError, InputFileError, OSError) as exc:
        print(f"fraudstream score: {exc}", file=sys.stderr)
        return 2
    print(format_score(result))
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(as_json(result), option=orjson.OPT_INDENT_2))
    return 0 if result.acceptable() else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fraudstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run the stream worker (Faust) against Kafka and Redis")
    dev = sub.add_parser("dev", help="local Kafka + Redis without Docker")
    dev.add_argument("action", choices=["install", "up", "down", "status"])
    dev.add_argument(
        "--with-prometheus", action="store_true", help="install: also Prometheus and promtool"
    )
    sub.add_parser("demo", help="dev up, run a worker, send sample events, print decisions")
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
    replay = sub.add_parser("replay", help="rebuild Redis state from Kafka after it was lost")
    replay.add_argument("--since", required=True, help="RFC 3339 time, or a duration like 36h")
    replay.add_argument("--quiet", action="store_true")
    bench = sub.add_parser("bench", help="throughput and latency on local Kafka + Redis")
    bench.add_argument("--quick", action="store_true", help="20k events, 8 s latency phase")
    bench.add_argument("--events", type=int, default=100_000)
    bench.add_argument("--duration", type=float, default=60.0, help="latency phase seconds")
    bench.add_argument("--json", help="write the result as JSON to this file")
    floor = sub.add_parser("bench-floor", help="(used by bench) faust with no-op agents")
    floor.add_argument("events", type=int)
    direct = sub.add_parser(
        "bench-direct", help="(used by bench) the pipeline on a plain aiokafka consumer"
    )
    direct.add_argument("events", type=int)
    simulate = sub.add_parser("simulate", help="write labelled marketplace traffic (JSONL)")
    simulation_command.add_arguments(simulate)
    score = sub.add_parser("score", help="score decisions against simulation labels")
    score.add_argument("labels", help="labels file from `simulate --labels`")
    score.add_argument("decisions", help="decision lines, e.g. from `backtest --out`")
    score.add_argument("--json", help="also write the scores as JSON to this file")
    contract = sub.add_parser("contract", help="write the input JSON Schemas")
    contract.add_argument("dir", nargs="?", default="contract/schemas")
    return parser


COMMANDS = {
    "worker": cmd_worker,
    "dev": cmd_dev,
    "demo": cmd_demo,
    "topics": cmd_topics,
    "rules": cmd_rules,
    "backtest": cmd_backtest,
    "replay": cmd_replay,
    "bench": cmd_bench,
    "bench-floor": cmd_bench_floor,
    "bench-direct": cmd_bench_direct,
    "contract": cmd_contract,
    "simulate": cmd_simulate,
    "score": cmd_score,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = from_env(os.environ)
    except ConfigError as exc:
        print(f"fraudstream: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    for noisy in ("aiokafka", "faust", "mode"):
        if args.command not in ("worker", "bench-floor", "bench-direct"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](settings, args)
    except FraudstreamError as exc:
        print(f"fraudstream: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
