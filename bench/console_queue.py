"""How fast the console's alert queue reads at a given number of alerts
(issue 15: usable at 100k): `python -m bench.console_queue [--alerts N]`.

A PostgreSQL of its own (the local services' code, a temporary directory),
N alerts written by the indexer's own code, one a second back from T0 over
five rules (one rule holding 0.1 % of them), then each query of the queue
page timed, best of 5: the first page, a page 90 % deep, filters alone and
together, a time range, and the count of newer alerts. Keyset paging means
a deep page costs what the first one costs.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psycopg

from console.filters import Cursor, QueueFilter
from console.index_store import write_rows
from console.mapping import index_record
from console.migrations import migrate
from console.queries import count_newer, queue_page
from console.rows import Position, Row, Source
from detectors.decisions import Alert
from detectors.rules import Mode, Severity
from detectors.rules_entities import EntityType
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


async def _fill(conn: psycopg.AsyncConnection[object], alerts: int) -> None:
    for start in range(0, alerts, CHUNK):
        rows: list[Row] = []
        for n in range(start, min(start + CHUNK, alerts)):
            rows += index_record(Source.ALERTS, Position("bench", 0, n), None, _alert(n))
        async with conn.transaction():
            await write_rows(conn, rows)
    await conn.execute("ANALYZE alerts")


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
    return lines


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
