"""Reading a worker's /metrics page: what the bench waits for and what it
reports come from the worker's own counters and histograms."""

from __future__ import annotations

import re
import urllib.request

__all__ = ["decided", "histogram", "last_decided", "metrics_text", "quantile", "total"]


def metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        return str(resp.read().decode())


def total(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def histogram(text: str, name: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for le, value in re.findall(rf'^{name}_bucket{{[^}}]*le="([^"]+)"[^}}]*}} (\S+)$', text, re.M):
        bound = float("inf") if le == "+Inf" else float(le)
        out[bound] = out.get(bound, 0.0) + float(value)
    return out


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Quantile of the observations between two histogram snapshots, linearly
    interpolated inside a bucket (as Prometheus' histogram_quantile does)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan")
    rank, prev_bound, prev_count = q * total, 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            width = count - prev_count
            return prev_bound + (bound - prev_bound) * ((rank - prev_count) / width if width else 1)
        prev_bound, prev_count = bound, count
    return prev_bound


def decided(metrics_text: str) -> float:
    """Records the worker has finished (decisions published), from its
    event-to-decision histogram. Not `fraud_events_consumed_total`: that
    counts a batch when it starts, so waiting on it left the load phase's
    last batch in flight, and its records, produced tens of seconds
    earlier, landed in the latency phase's histogram as multi-second
    outliers (p99 of 5.9 s, 7.0 s and 18.9 s in some runs)."""
    return total(metrics_text, "fraud_event_to_decision_seconds_count")


def last_decided(metrics_text: str) -> float:
    """Wall time of the worker's last finished batch (its own gauge)."""
    times = re.findall(
        r"^fraud_last_processed_timestamp_seconds(?:{[^}]*})? (\S+)$", metrics_text, re.M
    )
    return max((float(t) for t in times), default=0.0)
