"""How fast the console's pages read at a given number of alerts (issue
15: usable at 100k): `python -m bench.console_queue [--alerts N]`.

A PostgreSQL of its own (the local services' code, a temporary directory),
N alerts written by the indexer's own code, one a second back from T0 over
five rules (one rule holding 0.1 % of them), a freeze for every fifth alert
and a verdict (with its audit entry) for every third. Then each query of
the queue page timed, best of 5: the first page, a page 90 % deep, filters
alone and together, a time range, and the count of newer alerts (keyset
paging: a deep page costs what the first one costs); and the other pages'
queries: an alert's detail and verdicts, an entity's alerts and freezes,
the active freezes by age and by value, the audit log (newest, by actor),
the rules page's 24-hour fire counts and the per-rule precision (which
`/metrics` also computes at every scrape).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sized
from datetime import UTC, datetime
from pathlib import Path

import orjson
import psycopg

from console.filters import Cursor, QueueFilter
from console.index_store import write_rows
from console.mapping import index_record
from console.migrations import migrate
from console.queries import (
    alert_detail,
    count_newer,
    entity_alerts,
    entity_freezes,
    queue_page,
    verdicts_of,
)
from console.record_pages import active_freezes, audit_entries
from console.rows import Position, Row, Source
from console.rules_queries import fires_since
from console.verdict_stats import standing_verdicts
from detectors.decisions import Alert, Freeze
from detectors.rules import ActionKind, Mode, Severity
from detectors.rules_entities import EntityType
from detectors.verdicts import Verdict, VerdictKind
from devenv.postgres import database_url, start_postgres, stop_postgres
from devenv.services import JAR_CACHE, DevLayout

__all__ = ["main", "run"]

T0 = 1_796_000_000_000
RULES = ("user_order_velocity", "merchant_payout_spike", "device_voucher_accounts", "r4", "r5")
CHUNK = 5000


def _alert(n: int) -> bytes:
    at = T0 - n * 1000
    alert = Alert(
        alert_id=f"al_{n:032x}",
        rule_id="rare" if n % 1000 == 7 else RULES[n % len(RULES)],
        rule_version=1,
        severity=(Severity.HIGH, Severity.CRITICAL, Severity.MEDIUM)[n % 3],
        entity_type=EntityType.USER,
        entity_id=f"u-{n % 997}",
        window_ms=600_000,
        window_start_ms=at - 600_000,
        observed=9,
        threshold=8,
        trigger_event_id=f"ev-{n}",
        trigger_topic="orders",
        occurred_at_ms=at,
        detected_at_ms=at + 50,
        mode=Mode.SHADOW if n % 4 == 0 else Mode.ENFORCE,
        evidence={"aggregate": "count", "value": 9},
        margin=1,
        ruleset_version="a" * 64,
    )
    return orjson.dumps(alert.to_wire())


def _freeze(n: int) -> tuple[Source, bytes]:
    fund = n % 2 == 1
    freeze = Freeze(
        freeze_id=f"fz_{n:032x}",
        kind=ActionKind.FUND_FREEZE if fund else ActionKind.BENEFIT_FREEZE,
        subject_type=EntityType.USER,
        subject_id=f"u-{n % 997}",
        scope="payouts" if fund else "vouchers",
        rule_id=RULES[n % len(RULES)],
        severity=Severity.HIGH,
        reason_alert_id=f"al_{n:032x}",
        expires_at_ms=T0 + 7 * 86_400_000,
        issued_at_ms=T0 - n * 1000,
        amount_minor=(n * 37) % 100_000 if fund else None,
        currency="EUR" if fund else None,
        ruleset_version="a" * 64,
    )
    return (Source.FUND_FREEZES if fund else Source.BENEFIT_FREEZES), orjson.dumps(freeze.to_wire())


def _verdict(n: int) -> bytes:
    verdict = Verdict(
        verdict_id=f"vd_{n:032x}",
        alert_id=f"al_{n:032x}",
        verdict=(VerdictKind.TRUE_POSITIVE, VerdictKind.FALSE_POSITIVE, VerdictKind.UNSURE)[n % 3],
        rule_id=RULES[n % len(RULES)],
        severity=Severity.HIGH,
        entity_type=EntityType.USER,
        entity_id=f"u-{n % 997}",
        merchant_id=None,
        alert_occurred_at_ms=T0 - n * 1000,
        actor=f"analyst-{n % 20}",
        decided_at_ms=T0 + n,
    )
    return verdict.to_bytes()


def _records(n: int) -> list[tuple[Source, bytes]]:
    out = [(Source.ALERTS, _alert(n))]
    if n % 5 == 0:
        out.append(_freeze(n))
    if n % 3 == 0:
        out.append((Source.VERDICTS, _verdict(n)))
    return out


async def _fill(conn: psycopg.AsyncConnection[object], alerts: int) -> None:
    for start in range(0, alerts, CHUNK):
        rows: list[Row] = []
        for n in range(start, min(start + CHUNK, alerts)):
            for source, value in _records(n):
                rows += index_record(source, Position(source.value, 0, n), None, value)
        async with conn.transaction():
            await write_rows(conn, rows)
    await conn.execute("VACUUM ANALYZE")  # what autovacuum keeps a live index at


def _cases(alerts: int) -> dict[str, QueueFilter]:
    deep = alerts * 9 // 10
    before = Cursor(T0 - deep * 1000, f"al_{deep:032x}")
    return {
        "first page": QueueFilter(),
        "90% deep": QueueFilter(before=before),
        "rule": QueueFilter(rule="r4"),
        "rule, 90% deep": QueueFilter(rule="r4", before=before),
        "severity + mode": QueueFilter(severity=Severity.HIGH, mode=Mode.SHADOW),
        "time range": QueueFilter(since_ms=T0 - alerts * 500, until_ms=T0 - alerts * 400),
        "rare rule (0.1%)": QueueFilter(rule="rare"),
        "rare rule + severity": QueueFilter(rule="rare", severity=Severity.HIGH),
        "absent rule": QueueFilter(rule="nope"),
    }


async def _time(conn: psycopg.AsyncConnection[object], alerts: int) -> list[str]:
    lines = []
    for name, f in _cases(alerts).items():
        best, shown = float("inf"), 0
        for _ in range(5):
            t = time.perf_counter()
            shown = len((await queue_page(conn, f, 50)).alerts)
            best = min(best, time.perf_counter() - t)
        lines.append(f"{name:22s} {shown:3d} rows  {best * 1000:6.2f} ms")
    t = time.perf_counter()
    newer = await count_newer(conn, QueueFilter(), Cursor(T0 - alerts * 500, "al_"))
    lines.append(f"{'newer count':22s} {newer:3d}+      {(time.perf_counter() - t) * 1000:6.2f} ms")
    return lines + await _time_pages(conn, alerts)


async def _time_pages(conn: psycopg.AsyncConnection[object], alerts: int) -> list[str]:
    """The other pages' queries, each best of 5, with the rows it returned."""
    middle = f"al_{alerts // 30 * 15:032x}"  # with a freeze and a verdict
    since = datetime.fromtimestamp((T0 - 86_400_000) / 1000, tz=UTC)
    cases: dict[str, Callable[[], Awaitable[Sized]]] = {
        "alert detail": lambda: _one(alert_detail(conn, middle)),
        "alert's verdicts": lambda: verdicts_of(conn, middle),
        "entity's alerts": lambda: entity_alerts(conn, "user", "u-5", middle),
        "entity's freezes": lambda: entity_freezes(conn, "user", "u-5", middle),
        "freezes by age": lambda: active_freezes(conn, "fund", "age"),
        "freezes by value": lambda: active_freezes(conn, "fund", "value"),
        "audit, newest": lambda: audit_entries(conn, {}),
        "audit, one actor": lambda: audit_entries(conn, {"actor": "analyst-7"}),
        "rules: 24 h fires": lambda: _dict(fires_since(conn, [*RULES, "rare"], since)),
        "precision per rule": lambda: standing_verdicts(conn),
    }
    lines = []
    for name, query in cases.items():
        best, shown = float("inf"), 0
        for _ in range(5):
            t = time.perf_counter()
            shown = len(await query())
            best = min(best, time.perf_counter() - t)
        lines.append(f"{name:22s} {shown:3d} rows  {best * 1000:6.2f} ms")
    return lines


async def _one(found: Awaitable[object | None]) -> list[object]:
    row = await found
    return [] if row is None else [row]


async def _dict(found: Awaitable[dict[str, int]]) -> list[int]:
    return list((await found).values())


async def run(alerts: int) -> list[str]:
    layout = DevLayout(home=Path(tempfile.mkdtemp(prefix="console-queue-")), jar_cache=JAR_CACHE)
    with socket.socket() as s:  # a free port for this run's server
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    start_postgres(layout, port, "bench")
    try:
        url = database_url(port, "bench")
        migrate(url)
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
        async with conn:
            t = time.monotonic()
            await _fill(conn, alerts)
            filled = f"{alerts} alerts written in {time.monotonic() - t:.1f} s"
            return [filled, *await _time(conn, alerts)]
    finally:
        stop_postgres(layout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console_queue", description=__doc__)
    parser.add_argument("--alerts", type=int, default=100_000)
    args = parser.parse_args(argv)
    print("\n".join(asyncio.run(run(args.alerts))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
