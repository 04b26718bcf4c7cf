"""Generates the Grafana dashboards in deploy/grafana/dashboards/ from the panel
lists below: `python deploy/grafana/generate.py`. The committed JSON must equal
a regeneration (a test checks), and every query is run against a real
Prometheus that scraped a real worker (another test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detectors.money import DEFAULT_EXPONENT, MINOR_UNIT_EXPONENTS

DATASOURCE = {"type": "prometheus", "uid": "fraudstream-prometheus"}
OUT = Path(__file__).resolve().parent / "dashboards"

# (title, unit, [(expr, legend)], panel type)
Panel = tuple[str, str, list[tuple[str, str]], str]

# The panel tables are aligned by hand, one panel per group of lines.
# fmt: off
SRE: list[Panel] = [
    ("Events consumed / s by topic", "ops",
     [("sum by (topic) (rate(fraud_events_consumed_total[5m]))", "{{topic}}")], "timeseries"),
    ("Consumer lag (records)", "short",
     [("sum by (topic) (fraud_consumer_lag_records)", "{{topic}}")], "timeseries"),
    ("Consumer lag (seconds)", "s",
     [("max by (topic) (fraud_consumer_lag_seconds)", "{{topic}}")], "timeseries"),
    ("Event-to-decision latency p50 / p99", "s", [
        ("histogram_quantile(0.5, sum by (le) (rate(fraud_event_to_decision_seconds_bucket[5m])))",
         "p50"),
        ("histogram_quantile(0.99, sum by (le) (rate(fraud_event_to_decision_seconds_bucket[5m])))",
         "p99"),
    ], "timeseries"),
    ("Dead-letter ratio", "percentunit",
     [("sum(rate(fraud_dead_letters_total[5m]))"
       " / clamp_min(sum(rate(fraud_events_consumed_total[5m])), 1e-9)", "DLQ / consumed")],
     "timeseries"),
    ("Dead letters / s by reason", "ops",
     [("sum by (reason) (rate(fraud_dead_letters_total[5m]))", "{{reason}}")], "timeseries"),
    ("Heartbeat age (since last batch)", "s",
     [("time() - max by (topic) (fraud_last_processed_timestamp_seconds)", "{{topic}}")], "stat"),
    ("Redis script latency p99", "s",
     [("histogram_quantile(0.99, sum by (le, op) (rate(fraud_redis_call_seconds_bucket[5m])))",
       "{{op}}")], "timeseries"),
    ("Redis errors / s, store up, state losses", "short", [
        ("sum(rate(fraud_redis_errors_total[5m])) or vector(0)", "errors/s"),
        ("min(fraud_store_up)", "store up"),
        ("sum(increase(fraud_store_wipes_total[1h]))", "state lost (1 h)"),
    ], "timeseries"),
    ("Batch processing time p99", "s",
     [("histogram_quantile(0.99,"
       " sum by (le, topic) (rate(fraud_batch_processing_seconds_bucket[5m])))", "{{topic}}")],
     "timeseries"),
    ("Process CPU (cores)", "short",
     [("sum by (instance) (rate(process_cpu_seconds_total{job=\"fraudstream\"}[5m]))",
       "{{instance}}")], "timeseries"),
    ("Process RSS", "bytes",
     [("sum by (instance) (process_resident_memory_bytes{job=\"fraudstream\"})", "{{instance}}")],
     "timeseries"),
]
# fmt: on


def in_major_units(selector: str) -> str:
    """`sum by (currency) (<selector>)` in major units: each currency divided
    by 10^its minor-unit exponent (JPY 1, EUR 100, KWD 1000), one term per
    exponent; currencies not in the table have the ISO default of 2. Amounts
    in different currencies stay separate series."""
    metric, _, rng = selector.partition("[")
    by_exponent: dict[int, list[str]] = {}
    for code, exponent in sorted(MINOR_UNIT_EXPONENTS.items()):
        by_exponent.setdefault(exponent, []).append(code)
    others = "|".join(sorted(MINOR_UNIT_EXPONENTS))
    terms = [(DEFAULT_EXPONENT, f'currency!~"{others}"')]
    terms += [(e, f'currency=~"{"|".join(codes)}"') for e, codes in sorted(by_exponent.items())]
    return " or ".join(
        f"sum by (currency) (increase({metric}{{{match}}}[{rng}))"
        + (f" / {10**exponent}" if exponent else "")
        for exponent, match in terms
    )


# fmt: off
RISK: list[Panel] = [
    ("Alerts / min by rule and severity", "short",
     [("sum by (rule, severity) (rate(fraud_alerts_total[5m])) * 60", "{{rule}} ({{severity}})")],
     "timeseries"),
    ("Shadow vs enforce alerts / min", "short",
     [("sum by (mode) (rate(fraud_alerts_total[5m])) * 60", "{{mode}}")], "timeseries"),
    ("Freezes / min by kind", "short",
     [("sum by (kind) (rate(fraud_freezes_total[5m])) * 60 or vector(0)", "{{kind}}")],
     "timeseries"),
    ("Funds held by single-payout freezes (last 24 h, per currency)", "short",
     [(in_major_units("fraud_funds_held_minor_total[24h]") + " or vector(0)", "{{currency}}")],
     "stat"),
    ("Top firing rules (last hour)", "short",
     [("topk(5, sum by (rule) (increase(fraud_alerts_total[1h])))", "{{rule}}")], "bargauge"),
    ("Alert rate vs same time last week", "short", [
        ("sum(rate(fraud_alerts_total[1h])) * 3600", "this week (alerts/h)"),
        ("sum(rate(fraud_alerts_total[1h] offset 1w)) * 3600 or vector(0)", "last week (alerts/h)"),
    ], "timeseries"),
    ("Rule evaluation failures / s", "ops",
     [("sum by (rule) (rate(fraud_rule_failures_total[5m])) or vector(0)", "{{rule}}")],
     "timeseries"),
    ("Loaded rule set", "short", [
        ("max by (ruleset, version) (fraud_rules_loaded)", "{{ruleset}} {{version}}"),
        # More than one series: workers judging by different rule sets.
        ("count by (ruleset_version, source) (fraud_ruleset_info)",
         "workers on {{ruleset_version}} ({{source}})"),
    ], "stat"),
    ("Freeze releases / min by type", "short",
     [("sum by (release_type) (rate(fraud_releases_total[5m])) * 60 or vector(0)",
       "{{release_type}}")], "timeseries"),
    ("Freezes held back / min by reason", "short",
     [("sum by (reason) (rate(fraud_enforcement_suppressed_total[5m])) * 60 or vector(0)",
       "{{reason}}")], "timeseries"),
    ("Kill switch and circuit breaker (1 = on / tripped)", "short", [
        ("max(fraud_control_kill_switch)", "kill switch"),
        ("max(fraud_breaker_tripped)", "breaker tripped"),
    ], "stat"),
    ("Guardrail demotions and breaker trips (last 24 h)", "short", [
        ("sum by (rule) (increase(fraud_guardrail_demotions_total[24h])) or vector(0)",
         "demoted: {{rule}}"),
        ("sum(increase(fraud_breaker_trips_total[24h]))", "breaker trips"),
    ], "stat"),
    ("Control records refused (last hour)", "short",
     [("sum by (kind) (increase(fraud_control_records_rejected_total[1h])) or vector(0)",
       "{{kind}}")], "stat"),
    ("Merchants per health band", "short",
     [("max by (band) (fraud_merchant_health_merchants)", "{{band}}")], "timeseries"),
    # From the console's /metrics (job fraudstream-console), not the workers'.
    ("Rule precision from analysts' verdicts (console)", "percentunit",
     [("max by (rule) (fraud_console_rule_precision)", "{{rule}}")], "bargauge"),
]
# fmt: on


def panel(pid: int, spec: Panel) -> dict[str, Any]:
    title, unit, targets, kind = spec
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"x": ((pid - 1) % 2) * 12, "y": ((pid - 1) // 2) * 8, "w": 12, "h": 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard(uid: str, title: str, panels: list[Panel]) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "tags": ["fraudstream"],
        "schemaVersion": 39,
        "editable": False,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "panels": [panel(i, p) for i, p in enumerate(panels, start=1)],
    }


DASHBOARDS = {
    "fraudstream-sre.json": dashboard("fraudstream-sre", "fraudstream — SRE", SRE),
    "fraudstream-risk.json": dashboard("fraudstream-risk", "fraudstream — risk operations", RISK),
}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, board in DASHBOARDS.items():
        (OUT / name).write_text(render(board), encoding="utf-8")
        print(OUT / name)


if __name__ == "__main__":
    main()
