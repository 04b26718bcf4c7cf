"""`fraudstream backtest` on real Redis: same code path as the worker,
scratch namespace removed, bad lines dead-lettered, per-rule summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import redis.asyncio as aioredis

from stream.backtest import run_backtest
from stream.rules_loading import load_rulebook
from tests.integration.services import REPO, Services, settings_env, write_test_rules


def order(i: int, user: str, minute: int) -> bytes:
    return orjson.dumps(
        {
            "topic": "orders",
            "value": {
                "event_id": f"e{i}",
                "occurred_at": f"2026-11-02T12:{minute:02d}:00Z",
                "order_id": f"o{i}",
                "user_id": user,
                "merchant_id": "m1",
                "amount_minor": 1200,
                "currency": "EUR",
            },
        }
    )


def redemption(i: int, user: str) -> bytes:
    return orjson.dumps(
        {
            "topic": "voucher-redemptions",
            "value": {
                "event_id": f"r{i}",
                "occurred_at": f"2026-11-02T13:0{i}:00Z",
                "redemption_id": f"rd{i}",
                "voucher_id": "v",
                "user_id": user,
                "merchant_id": "m1",
                "face_value_minor": 1000,
                "subsidy_minor": 500,
                "currency": "EUR",
                "device_id": "tablet-7",
            },
        }
    )


def write_events(path: Path) -> None:
    lines = [order(i, "bursty", i) for i in range(6)]
    lines += [order(10 + i, "calm", i * 20) for i in range(3)]
    lines += [redemption(i, f"acct{i}") for i in range(3)]
    lines += [b"this is not json", orjson.dumps({"topic": "orders", "value": {"event_id": "x"}})]
    path.write_bytes(b"\n".join(lines) + b"\n")


async def test_backtest_writes_decisions_and_cleans_up(
    services: Services, tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    settings = services.settings(rules_file=write_test_rules(tmp_path))
    events, out = tmp_path / "events.jsonl", tmp_path / "decisions.jsonl"
    write_events(events)
    summary = await run_backtest(settings, load_rulebook(settings), events, out, None)
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    by_topic: dict[str, list[dict]] = {}  # type: ignore[type-arg]
    for r in records:
        by_topic.setdefault(r["topic"], []).append(r["value"])
    alerts = by_topic[settings.topics.alerts]
    assert sorted((a["rule_id"], a["entity_id"]) for a in alerts) == [
        ("device_voucher_accounts", "tablet-7"),
        ("device_voucher_accounts_strict", "tablet-7"),
        ("user_order_velocity", "bursty"),
    ]
    (freeze,) = by_topic[settings.topics.benefit_freezes]
    assert freeze["scope"] == "all_benefits"
    kinds = sorted(d["error"]["kind"] for d in by_topic[settings.topics.dlq])
    assert kinds == ["invalid_json", "missing_field"]
    assert summary.events == 14 and summary.dead_letters == 2
    assert summary.rules["user_order_velocity"].hits == 1
    assert summary.rules["device_voucher_accounts_strict"].freezes == 1
    assert "user_order_velocity" in summary.table()
    leftovers = [k async for k in redis_client.scan_iter(match=f"{settings.redis_namespace}-bt-*")]
    assert leftovers == []


def test_backtest_command_line(services: Services, tmp_path: Path) -> None:
    settings = services.settings(rules_file=write_test_rules(tmp_path))
    events, out = tmp_path / "events.jsonl", tmp_path / "decisions.jsonl"
    write_events(events)
    env = {"PATH": "/usr/bin:/bin", **settings_env(settings)}
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "backtest", str(events), "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "user_order_velocity" in proc.stdout and "14 events" in proc.stdout
    assert out.exists() and len(out.read_bytes().splitlines()) >= 4


def test_rules_check_command_reports_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: x\n    version: 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "rules", "check", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "rules[0].triggers: is required" in proc.stderr or "is required" in proc.stderr
    good = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli",
            "rules",
            "check",
            str(REPO / "stream/rulesets/default.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert good.returncode == 0 and "OK" in good.stdout


def test_worker_refuses_to_start_on_a_bad_rule_file(services: Services, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - id: r\n    severity: loud\n")
    settings = services.settings(rules_file=bad)
    env = {"PATH": "/usr/bin:/bin", **settings_env(settings)}
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "bad.yaml" in proc.stderr and "is required" in proc.stderr
