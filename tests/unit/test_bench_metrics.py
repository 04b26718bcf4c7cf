"""The bench reads the worker's /metrics; what it waits for decides which
records land in the latency histogram it reports."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bench.latency_floor import percentile
from bench.redis_server import Instructions
from bench.scrape import decided, last_decided, quantile

METRICS = """\
# TYPE fraud_events_consumed_total counter
fraud_events_consumed_total{topic="orders"} 180.0
fraud_events_consumed_total{topic="payouts"} 20.0
# TYPE fraud_event_to_decision_seconds histogram
fraud_event_to_decision_seconds_bucket{le="0.1",topic="orders"} 90.0
fraud_event_to_decision_seconds_bucket{le="+Inf",topic="orders"} 100.0
fraud_event_to_decision_seconds_count{topic="orders"} 100.0
fraud_event_to_decision_seconds_sum{topic="orders"} 5.0
fraud_event_to_decision_seconds_count{topic="payouts"} 20.0
# TYPE fraud_last_processed_timestamp_seconds gauge
fraud_last_processed_timestamp_seconds{topic="orders"} 1790000012.5
fraud_last_processed_timestamp_seconds{topic="payouts"} 1790000010.25
"""


def test_the_bench_waits_for_decisions_not_for_batches_taken() -> None:
    """200 records taken, 120 decided: a bench that starts its latency phase
    at 200 would time the other 80 as latency-phase records."""
    assert decided(METRICS) == 120.0


def test_quantile_counts_only_observations_between_the_snapshots() -> None:
    before = {0.1: 90.0, float("inf"): 100.0}
    after = {0.1: 190.0, float("inf"): 200.0}  # 100 new: 100 under 0.1 s, 0 above
    assert quantile(0.99, before, after) <= 0.1
    slow = {0.1: 90.0, float("inf"): 200.0}  # 100 new, all above 0.1 s
    assert quantile(0.5, before, slow) == 0.1


def test_the_last_decision_time_is_the_workers_latest_batch() -> None:
    assert last_decided(METRICS) == 1790000012.5


def test_faust_floor_span_reports_once_and_leaves_out_the_first_batch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench.floor import ThroughputSpan

    wall, cpu = iter([10.0, 12.0]), iter([5.0, 5.4])
    span = ThroughputSpan(1000, clock=lambda: next(wall), cpu_clock=lambda: next(cpu))
    span.add(200)  # the first batch: its wait for the consumer group is not throughput
    span.add(700)
    assert span.report is None
    span.add(300)
    span.add(50)  # past the target: the report stays as it was
    span.print_report()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    report = orjson.loads(lines[0])
    # 1,000 records after the first batch, in 2 s and 0.4 CPU s.
    assert report["eps"] == 500.0
    assert report["cpu_s_per_1k_events"] == pytest.approx(0.4)
    assert span.seen == 1250 and span.first_batch == 200


def test_the_latency_floor_takes_nearest_rank_percentiles() -> None:
    ages = [float(i) for i in range(1, 101)]  # 1..100
    assert percentile(0.5, ages) == 50.0
    assert percentile(0.99, ages) == 99.0
    assert percentile(1.0, ages) == 100.0
    assert percentile(0.99, [7.0]) == 7.0


def test_callgrind_instructions_are_its_totals_not_its_summary(tmp_path: Path) -> None:
    """With instrumentation switched on and off, callgrind writes `summary:
    0` before the real `totals:` (bench/redis_server.py)."""
    out = tmp_path / "callgrind.out"
    out.write_text("version: 1\npart: 1\nevents: Ir\nsummary: 0\ntotals: 83365\n")
    counter = Instructions(out=out)
    counter.read_total()
    assert counter.total == 83_365
    out.write_text("events: Ir\nsummary: 0\n")
    with pytest.raises(RuntimeError, match="no instruction total"):
        counter.read_total()
