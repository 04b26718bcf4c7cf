"""`python -m bench live` runs end to end and reports what it promises (a smoke
test of the tool: the numbers themselves are checked by reading the report,
never asserted against targets in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.integration.services import REPO, Services, settings_env


def test_bench_reports_throughput_latency_and_resources(services: Services, tmp_path: Path) -> None:
    settings = services.settings()
    env = {
        "PATH": "/usr/bin:/bin",
        **settings_env(settings),
        "FRAUD_DEV_HOME": str(tmp_path / "dev"),
    }
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "live",
            "--events",
            "3000",
            "--duration",
            "3",
            "--json",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = orjson.loads(out.read_bytes())
    for key in (
        "events",
        "throughput_eps",
        "baseline_eps",
        "faust_floor_eps",
        "faust_floor_cpu_s_per_1k_events",
        "direct_eps",
        "direct_cpu_s_per_1k_events",
        "ratio",
        "p50_ms",
        "p99_ms",
        "rss_start_mb",
        "rss_end_mb",
    ):
        assert key in result
    assert result["events"] == 3000
    assert result["throughput_eps"] > 0 and result["baseline_eps"] > 0
    assert result["ratio"] > 0
    assert result["faust_floor_eps"] > 0 and result["faust_floor_cpu_s_per_1k_events"] > 0
    assert result["faust_batch_floor_eps"] > 0  # the floor with batch delivery
    assert result["direct_eps"] > 0 and result["direct_cpu_s_per_1k_events"] > 0
    assert abs(result["ratio"] - result["throughput_eps"] / result["baseline_eps"]) < 0.002
    assert result["p50_ms"] <= result["p99_ms"]
    assert result["rss_start_mb"] > 10
    print(f"\n{proc.stdout}")
