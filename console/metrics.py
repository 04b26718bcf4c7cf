"""The console's Prometheus metrics, in its own registry served on its
`/metrics`. Labels are topic names, reasons and table names: bounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DELAY_BUCKETS", "ConsoleMetrics"]

DELAY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.indexed = Counter(
            "fraud_console_records_indexed_total",
            "Records written to the console's database (a redelivery counts again)",
            ["topic"],
            registry=r,
        )
        self.rejected = Counter(
            "fraud_console_records_rejected_total",
            "Records that could not be indexed, kept in rejected_records",
            ["topic", "reason"],
            registry=r,
        )
        self.database_errors = Counter(
            "fraud_console_database_errors_total",
            "Database failures of the indexer (the batch is retried, offsets not committed)",
            registry=r,
        )
        self.lag = Gauge(
            "fraud_console_indexer_lag_records",
            "Records in the topic not yet indexed (sum over the assigned partitions)",
            ["topic"],
            registry=r,
        )
        self.delay = Histogram(
            "fraud_console_index_delay_seconds",
            "From a record's Kafka timestamp to its rows being committed",
            buckets=DELAY_BUCKETS,
            registry=r,
        )
        self.rule_precision = Gauge(
            "fraud_console_rule_precision",
            "Per rule: true positives / (true + false positives) among the verdicts that stand",
            ["rule"],
            registry=r,
        )
        self.rule_verdicts = Gauge(
            "fraud_console_rule_verdicts",
            "Per rule: alerts whose standing verdict is this one",
            ["rule", "verdict"],
            registry=r,
        )
        self.purged = Counter(
            "fraud_console_rows_purged_total",
            "Rows deleted for being older than the retention",
            ["table"],
            registry=r,
        )
