"""`fraudstream control`: steer running workers through `risk-control`.

Each changing command builds one control record (detectors.control) and
publishes it to `risk-control`, then the same bytes to
`risk-control-audit` (compaction keeps only the last record per key; the
audit topic keeps the history). The record's `control_id` is the
command's idempotency key (`--id`, default a fresh random one): publishing
the same command twice with the same id changes nothing a worker does.
`show` folds the control topic as a worker does; `log` prints the audit
topic. `rules publish FILE` publishes a whole rule file (a `ruleset`
record) once it passes `rules check`, after showing what it changes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from detectors.control import (
    Breaker,
    BreakerState,
    ControlRecord,
    ControlRecordError,
    KillSwitch,
    ListEntityType,
    ListEntry,
    ListName,
    Provenance,
    Release,
    RuleMode,
    RuleModeSetting,
    Snooze,
    Switch,
)
from detectors.control_parsing import parse_control
from detectors.control_snapshot import ControlSnapshot
from detectors.durations import parse_duration_ms
from detectors.errors import ConfigError, InputFileError
from detectors.release_types import ReleaseType
from detectors.rulebook import Rulebook, RulebookError
from detectors.timestamps import format_rfc3339_ms, parse_rfc3339_ms
from stream.control_rules import build_ruleset, diff_rules
from stream.settings import Settings

if TYPE_CHECKING:
    from stream.control_follower import Rejected

__all__ = [
    "RELEASE_TYPES",
    "add_arguments",
    "build_record",
    "describe_snapshot",
    "encode",
    "load_control",
    "parse_until",
    "run",
]


# `expired` is the workers' own release type.
RELEASE_TYPES = [t.value for t in ReleaseType if t is not ReleaseType.EXPIRED]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    issued = argparse.ArgumentParser(add_help=False)
    issued.add_argument("--reason", required=True, help="why (kept in the audit history)")
    issued.add_argument("--actor", help="who issues it (default: FRAUD_ACTOR or the OS user)")
    issued.add_argument("--id", help="idempotency key of this command (default: a random one)")
    sub = parser.add_subparsers(dest="control_command", required=True)

    def changing(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[issued])

    kill = changing("kill-switch", "all enforcement off (alerts continue, marked)")
    kill.add_argument("state", choices=[s.value for s in Switch])
    mode = changing("mode", "force one rule to shadow, enforce or off")
    mode.add_argument("rule")
    mode.add_argument("mode", choices=[m.value for m in RuleModeSetting])
    lists = changing("list", "add an entity to a list, or remove it")
    lists.add_argument("action", choices=["add", "remove"])
    lists.add_argument("list", choices=[n.value for n in ListName])
    lists.add_argument("type", choices=[t.value for t in ListEntityType])
    lists.add_argument("entity_id")
    lists.add_argument("--expires-at", help="RFC 3339 time or a duration from now (7d)")
    snooze = changing("snooze", "no alert and no freeze for an entity until a time")
    snooze.add_argument("type", choices=[t.value for t in ListEntityType])
    snooze.add_argument("entity_id")
    snooze.add_argument("--rule", help="only this rule (default: every rule)")
    snooze.add_argument("--until", required=True, help="RFC 3339 time or a duration (2h)")
    release = changing("release", "release one freeze now (a release record on its freeze topic)")
    release.add_argument("freeze_id", help="the freeze's freeze_id (fz_...)")
    release.add_argument(
        "--type", dest="release_type", required=True, choices=RELEASE_TYPES, help="why it ends"
    )
    release.add_argument(
        "--code", dest="reason_code", required=True, help="reason code (lowercase id, e.g. kyc_ok)"
    )
    breaker = changing("breaker", "trip the global circuit breaker, or reset it (re-arm)")
    breaker.add_argument("state", choices=[s.value for s in BreakerState])
    rules = sub.add_parser("rules", help="the rule set every worker runs")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    publish_rules = rules_sub.add_parser(
        "publish", help="publish a rule file (checked as by `rules check`)", parents=[issued]
    )
    publish_rules.add_argument("file")
    show = sub.add_parser("show", help="the current snapshot, folded from the control topic")
    show.add_argument("--json", action="store_true", help="a saved snapshot (backtest --control)")
    log = sub.add_parser("log", help="every control record ever published (the audit topic)")
    log.add_argument("--json", action="store_true", help="one JSON record per line")


def parse_until(text: str, now_ms: int, option: str) -> int:
    """An RFC 3339 time, or a duration forward from now ("2h", "7d")."""
    try:
        return parse_rfc3339_ms(text)
    except ValueError:
        pass
    try:
        return now_ms + parse_duration_ms(text)
    except ValueError:
        expected = f"expected an RFC 3339 time or a duration, got {text!r}"
        raise ConfigError(option, expected) from None


def build_record(args: argparse.Namespace, meta: Provenance) -> ControlRecord:
    now = meta.issued_at_ms
    command = args.control_command
    if command == "kill-switch":
        return KillSwitch(Switch(args.state), meta)
    if command == "mode":
        return RuleMode(args.rule, RuleModeSetting(args.mode), meta)
    if command == "breaker":
        return Breaker(BreakerState(args.state), meta)
    if command == "list":
        expires = parse_until(args.expires_at, now, "--expires-at") if args.expires_at else None
        entity = ListEntityType(args.type)
        removed = args.action == "remove"
        return ListEntry(ListName(args.list), entity, args.entity_id, expires, removed, meta)
    if command == "release":
        release_type = ReleaseType(args.release_type)
        return Release(args.freeze_id, release_type, args.reason_code, meta)
    until = parse_until(args.until, now, "--until")
    return Snooze(ListEntityType(args.type), args.entity_id, args.rule, until, meta)


def encode(record: ControlRecord) -> bytes:
    return orjson.dumps(record.to_wire(), option=orjson.OPT_SORT_KEYS)


def _credentials(settings: Settings) -> dict[str, Any]:
    """The worker's own credentials (FRAUD_KAFKA_SECURITY_PROTOCOL, ...): the
    CLI reaches a secured cluster as the workers do."""
    from stream.kafka_security import aiokafka_security

    return aiokafka_security(settings.kafka_security)


async def publish(settings: Settings, record: ControlRecord) -> None:
    """The state first: a record in the audit topic always took effect."""
    from stream.kafka_io import produce  # Kafka clients only for the commands that talk to it

    key, value = record.key().encode(), encode(record)
    options = _credentials(settings)
    for topic in (settings.topics.control, settings.topics.control_audit):
        await produce(settings.kafka_bootstrap, topic, [(key, value)], client_options=options)


def _warn(item: Rejected) -> None:
    print(f"refused record at offset {item.offset} ({item.key!r}): {item.error}", file=sys.stderr)


async def read_snapshot(settings: Settings) -> ControlSnapshot:
    from stream.control_follower import fold_messages
    from stream.kafka_io import read_from

    messages = await read_from(
        settings.kafka_bootstrap, settings.topics.control, client_options=_credentials(settings)
    )
    return fold_messages(ControlSnapshot(), messages, _warn)


def describe(record: ControlRecord) -> str:
    wire = record.to_wire()
    shown = {
        k: v
        for k, v in wire.items()
        if k not in ("kind", "schema_version", "control_id", "actor", "reason", "issued_at")
        and k != "rules_yaml"  # the whole file: `control show --json` has it
        and v is not None
    }
    detail = " ".join(f"{k}={v}" for k, v in shown.items())
    return (
        f"{wire['issued_at']}  {wire['actor']:<12} {record.kind.value:<11} {detail}"
        f"  — {wire['reason']} [{record.meta.control_id}]"
    )


def load_control(path: Path) -> ControlSnapshot:
    """A snapshot saved by `control show --json`, every record checked."""
    try:
        return ControlSnapshot.from_wire(orjson.loads(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise InputFileError(str(path), None, f"not a saved control snapshot: {exc}") from None


def describe_snapshot(snapshot: ControlSnapshot) -> str:
    kinds = Counter(r.kind.value for r in snapshot.records.values())
    parts = [f"{n} {kind}" for kind, n in sorted(kinds.items())]
    switch = "ON" if snapshot.kill_switch else "off"
    breaker = "TRIPPED" if snapshot.breaker_tripped else "armed"
    return f"{snapshot.applied} records folded; kill switch {switch}; breaker {breaker}; " + (
        ", ".join(parts) or "no live records"
    )


def print_snapshot(snapshot: ControlSnapshot, now_ms: int, out: IO[str]) -> None:
    print(describe_snapshot(snapshot), file=out)
    ruleset = snapshot.ruleset
    if ruleset is None:
        print("rule set: none published (each worker runs its rules file)", file=out)
    else:
        book, meta = ruleset.rulebook, ruleset.meta
        print(
            f"rule set: {ruleset.ruleset_version} ({book.name} {book.version}, "
            f"{len(book.rules)} rules) by {meta.actor} at {format_rfc3339_ms(meta.issued_at_ms)}",
            file=out,
        )
    for key, record in sorted(snapshot.records.items()):
        expired = isinstance(record, ListEntry | Snooze) and not record.active(now_ms)
        print(f"  {key}: {describe(record)}{'  (expired)' if expired else ''}", file=out)


async def print_log(settings: Settings, as_json: bool, out: IO[str]) -> None:
    from stream.control_follower import Rejected, decode
    from stream.kafka_io import read_from

    audit = settings.topics.control_audit
    for message in await read_from(
        settings.kafka_bootstrap, audit, client_options=_credentials(settings)
    ):
        item = decode(message)
        if isinstance(item, Rejected):
            _warn(item)
        elif item[1] is None:
            print(f"(tombstone) {item[0]}", file=out)
        elif as_json:
            print(orjson.dumps(item[1].to_wire()).decode(), file=out)
        else:
            print(describe(item[1]), file=out)


def run(settings: Settings, args: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    now_ms = int(time.time() * 1000)
    if args.control_command == "show":
        snapshot = asyncio.run(read_snapshot(settings))
        if args.json:
            out.write(orjson.dumps(snapshot.to_wire(), option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            print_snapshot(snapshot, now_ms, out)
        return 0
    if args.control_command == "log":
        asyncio.run(print_log(settings, args.json, out))
        return 0
    actor = args.actor or settings.actor
    meta = Provenance(args.id or uuid.uuid4().hex, actor, args.reason, now_ms)
    if args.control_command == "rules":
        return publish_rules(settings, Path(args.file), meta, out)
    record = build_record(args, meta)
    # The worker's own parser is the check: what it would refuse is never sent.
    parse_control(record.key(), encode(record))
    asyncio.run(publish(settings, record))
    print(f"published {record.key()} [{meta.control_id}]: {describe(record)}", file=out)
    return 0


def _in_effect(settings: Settings, out: IO[str]) -> Rulebook:
    """The rule set workers run now: the published one, else these settings' file."""
    from stream.rules_loading import load_rulebook

    published = asyncio.run(read_snapshot(settings)).ruleset
    if published is None:
        print("in effect: no ruleset published (workers run their rules files)", file=out)
        return load_rulebook(settings)
    meta = published.meta
    print(
        f"in effect: ruleset_version {published.ruleset_version}, published by {meta.actor} "
        f"at {format_rfc3339_ms(meta.issued_at_ms)} ({meta.reason})",
        file=out,
    )
    return published.rulebook


def publish_rules(settings: Settings, path: Path, meta: Provenance, out: IO[str]) -> int:
    """Exit status 0: published; 1: refused, nothing sent (the file is not a
    valid rule file, or too large); 2: the file cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path}: cannot read: {exc}", file=sys.stderr)
        return 2
    try:
        record = build_ruleset(text, str(path), meta)
        # The workers' own parser: the size bound and the digest as they check them.
        parse_control(record.key(), encode(record))
    except (RulebookError, ControlRecordError) as exc:
        print(f"not published: {exc}", file=sys.stderr)
        return 1
    book = record.rulebook
    print(
        f"{path}: OK — ruleset {book.name} {book.version}, {len(book.rules)} rules, "
        f"ruleset_version {record.ruleset_version}",
        file=out,
    )
    print("\n".join(diff_rules(_in_effect(settings, out), book).lines()), file=out)
    asyncio.run(publish(settings, record))
    print(f"published {record.key()} [{meta.control_id}]: {describe(record)}", file=out)
    return 0
