"""Observability against real services: promtool on the alert rules and on a
live /metrics page, and every dashboard panel's query run against a real
Prometheus that scraped a real worker processing traffic through Kafka + Redis."""

from __future__ import annotations

import importlib.util
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from detectors.timestamps import format_rfc3339_ms
from devenv import services as devservices
from devenv.samples import sample_stream
from stream import kafka_io
from tests.integration.services import (
    REPO,
    Services,
    WorkerProcess,
    create_topics,
    free_port,
    wait_caught_up,
    wait_ready,
)

PROM_DIR = REPO / "deploy" / "prometheus"


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("gen", REPO / "deploy/grafana/generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    promtool = devservices.ensure_prometheus()
    check = subprocess.run(
        [promtool, "check", "rules", "alerts.yml"], cwd=PROM_DIR, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    count = sum(len(g["rules"]) for g in rules["groups"])
    assert f"SUCCESS: {count} rules found" in check.stdout
    test = subprocess.run(
        [promtool, "test", "rules", "alerts_test.yml"], cwd=PROM_DIR, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_money_panels_show_each_currency_in_its_own_major_units(tmp_path: Path) -> None:
    """promtool evaluates the funds-held panel's query on synthetic series:
    cents become euros, yen stay yen, fils become dinars, and currencies are
    never summed together."""
    expr = next(
        t["expr"]
        for p in load_generator().DASHBOARDS["fraudstream-risk.json"]["panels"]
        if p["title"].startswith("Funds held")
        for t in p["targets"]
    )
    (tmp_path / "rules.yml").write_text(
        orjson.dumps(
            {"groups": [{"name": "g", "rules": [{"record": "held_major", "expr": expr}]}]}
        ).decode()
    )
    series = {"EUR": "0+2500x1440", "JPY": "0+500x1440", "KWD": "0+1250x1440", "SEK": "0+100x1440"}
    expected = {"EUR": 36000, "JPY": 720000, "KWD": 1800, "SEK": 1440}  # one day of growth
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'fraud_funds_held_minor_total{{currency="{c}"}}', "values": v}
                    for c, v in series.items()
                ],
                "promql_expr_test": [
                    {
                        "expr": "held_major",
                        "eval_time": "1d",
                        "exp_samples": [
                            {"labels": f'held_major{{currency="{c}"}}', "value": v}
                            for c, v in expected.items()
                        ]
                        + [{"labels": "held_major", "value": 0}],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(orjson.dumps(test).decode())
    promtool = devservices.ensure_prometheus()
    run = subprocess.run(
        [promtool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def history(run: str) -> list[tuple[bytes | None, bytes | None]]:
    """A merchant's first order nine days ago: sent (and processed) first, as
    topics are consumed independently and the payout rule needs its age."""
    now = int(time.time() * 1000)
    return [
        (
            b"m-old",
            orjson.dumps(
                {
                    "event_id": f"{run}-first",
                    "occurred_at": format_rfc3339_ms(now - 9 * 86_400_000),
                    "order_id": "o",
                    "user_id": "u",
                    "merchant_id": f"{run}-m-old",
                    "amount_minor": 100,
                    "currency": "EUR",
                }
            ),
        )
    ]


def traffic(run: str) -> dict[str, list[tuple[bytes | None, bytes | None]]]:
    """The demo stream plus events that make the default rules freeze benefits
    (a device farm) and hold a payout (new bank account, established merchant)."""
    now = int(time.time() * 1000)
    out: dict[str, list[tuple[bytes | None, bytes | None]]] = {}
    for r in sample_stream(run, now - 3 * 3_600_000):
        out.setdefault(r.topic.value, []).append((r.key, r.value))
    out["orders"].append(
        (
            b"m-old",
            orjson.dumps(
                {
                    "event_id": f"{run}-first",
                    "occurred_at": format_rfc3339_ms(now - 9 * 86_400_000),
                    "order_id": "o",
                    "user_id": "u",
                    "merchant_id": f"{run}-m-old",
                    "amount_minor": 100,
                    "currency": "EUR",
                }
            ),
        )
    )
    out["payouts"].append(
        (
            b"m-old",
            orjson.dumps(
                {
                    "event_id": f"{run}-big-payout",
                    "occurred_at": format_rfc3339_ms(now - 60_000),
                    "payout_id": "p-9",
                    "merchant_id": f"{run}-m-old",
                    "amount_minor": 900_000,
                    "currency": "EUR",
                    "destination_fingerprint": f"{run}-new-iban",
                }
            ),
        )
    )
    for i in range(3):  # a brand-new merchant selling 27,000.00 within an hour (shadow rule)
        out["orders"].append(
            (
                b"m-new",
                orjson.dumps(
                    {
                        "event_id": f"{run}-big-{i}",
                        "occurred_at": format_rfc3339_ms(now - 600_000 + i),
                        "order_id": f"big{i}",
                        "user_id": f"{run}-buyer-{i}",
                        "merchant_id": f"{run}-m-new",
                        "amount_minor": 900_000,
                        "currency": "EUR",
                    }
                ),
            )
        )
    for i in range(6):
        out["voucher-redemptions"].append(
            (
                b"m-001",
                orjson.dumps(
                    {
                        "event_id": f"{run}-farm-{i}",
                        "occurred_at": format_rfc3339_ms(now - 3_600_000 + i),
                        "redemption_id": f"rd{i}",
                        "voucher_id": "v",
                        "user_id": f"{run}-acct-{i}",
                        "merchant_id": "m-001",
                        "face_value_minor": 1000,
                        "subsidy_minor": 500,
                        "currency": "EUR",
                        "device_id": f"{run}-farm-tablet",
                    }
                ),
            )
        )
    return out


@pytest.fixture(scope="module")
def scraped(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A worker with the default rules, fed traffic, scraped every second by a
    real Prometheus. Yields the Prometheus base URL."""
    import asyncio

    prometheus = devservices.ensure_prometheus().replace("promtool", "prometheus")
    tmp = Path(tmp_path_factory.mktemp("observability"))
    settings = services.settings()
    asyncio.run(create_topics(settings))
    worker = WorkerProcess(settings, tmp / "worker.log")
    prom_port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{PROM_DIR / 'alerts.yml'}]\n"
        "scrape_configs:\n  - job_name: fraudstream\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{settings.web_port}']\n"
    )
    prom = subprocess.Popen(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=open(tmp / "prometheus.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        worker.start()
        wait_ready(worker)

        async def feed() -> None:
            await kafka_io.produce(settings.kafka_bootstrap, settings.topics.orders, history("obs"))
            await wait_caught_up(worker, [settings.topics.orders])
            for topic, pairs in traffic("obs").items():
                name = settings.topics.input_name(
                    __import__("detectors.events").events.Topic(topic)
                )
                await kafka_io.produce(settings.kafka_bootstrap, name, pairs)
            await wait_caught_up(worker, list(settings.topics.inputs().values()))

        asyncio.run(feed())
        base = f"http://127.0.0.1:{prom_port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if query(base, 'fraud_freezes_total{kind="fund_freeze"}') and query(
                base, "fraud_consumer_lag_records"
            ):
                break
            time.sleep(1)
        time.sleep(6)  # a few more scrapes so every rate() has two samples
        yield base
    finally:
        worker.stop()
        prom.terminate()
        prom.wait(30)


def query(base: str, expr: str) -> list[Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = orjson.loads(resp.read())
    except OSError:
        return []
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_every_dashboard_panel_returns_data(scraped: str) -> None:
    generator = load_generator()
    checked = 0
    empty = []
    for name, board in generator.DASHBOARDS.items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                if "fraud_console_" in target["expr"]:
                    continue  # the console's (not run here): tests/unit/test_deploy.py checks
                if not query(scraped, target["expr"]):
                    empty.append(f"{name}: {panel['title']}: {target['expr']}")
                checked += 1
    assert checked >= 20
    assert empty == []


def test_live_metrics_pass_promtool_and_name_the_decisions(
    scraped: str, services: Services
) -> None:
    assert query(scraped, 'up{job="fraudstream"} == 1')
    assert query(scraped, 'fraud_alerts_total{mode="shadow"}')
    assert query(scraped, 'fraud_freezes_total{kind="benefit_freeze"}')
    held = query(scraped, "fraud_funds_held_minor_total")
    assert held and float(held[0]["value"][1]) == 900_000
    target = query(scraped, "up")[0]["metric"]["instance"]
    with urllib.request.urlopen(f"http://{target}/metrics", timeout=5) as resp:
        text = resp.read()
    promtool = devservices.ensure_prometheus()
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    for name in (
        b"fraud_event_to_decision_seconds_bucket",
        b"fraud_consumer_lag_seconds",
        b"fraud_redis_call_seconds_bucket",
        b"fraud_build_info",
        b"fraud_rules_loaded",
        b"process_resident_memory_bytes",
    ):
        assert name in text
