"""Prometheus metrics of one worker, in one registry served on `/metrics`.

Names follow Prometheus conventions: `fraud_` prefix, base units, `_total`
counters, and no entity ids in labels (bounded cardinality).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from stream.blocked import BlockedPartition, Change

__all__ = ["LATENCY_BUCKETS", "REDIS_BUCKETS", "Metrics"]

# Finer around 100 ms, the p99 target at half load: between the 0.1 and 0.25
# buckets an interpolated p99 could be anywhere from 100 to 250 ms.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300
)  # fmt: skip
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "fraud_events_consumed_total", "Input records consumed", ["topic"], registry=r
        )
        self.events_processed = Counter(
            "fraud_events_processed_total",
            "Valid input events processed, by outcome (new, dup, late, other)",
            ["topic", "outcome"],
            registry=r,
        )
        self.dead_letters = Counter(
            "fraud_dead_letters_total", "Inputs sent to the DLQ", ["topic", "reason"], registry=r
        )
        self.alerts = Counter(
            "fraud_alerts_total", "Alerts published", ["rule", "severity", "mode"], registry=r
        )
        self.alerts_reemitted = Counter(
            "fraud_alerts_reemitted_total",
            "Alerts republished with their original id after a redelivery",
            ["rule"],
            registry=r,
        )
        self.events_settled = Counter(
            "fraud_events_settled_total",
            "Redelivered records not judged again: their decisions were delivered already",
            ["topic"],
            registry=r,
        )
        self.late_values = Counter(
            "fraud_late_events_total",
            "Aggregate updates refused because the event was older than window + allowed lateness",
            ["topic"],
            registry=r,
        )
        self.held_records = Gauge(
            "fraud_alignment_held_records",
            "Records held until the input partitions they wait for catch up in event time",
            registry=r,
        )
        self.hold_age = Gauge(
            "fraud_alignment_hold_age_seconds",
            "How long the longest-held record has waited (0 when nothing is held)",
            registry=r,
        )
        self.paused_partitions = Gauge(
            "fraud_alignment_paused_partitions",
            "Input partitions paused because too many of their records are held",
            registry=r,
        )
        self.pauses = Counter(
            "fraud_alignment_pauses_total",
            "Times an input partition was paused because FRAUD_ALIGN_MAX_HELD records were held",
            registry=r,
        )
        self.stalled_partitions = Gauge(
            "fraud_alignment_stalled_partitions",
            "Input partitions behind with records in Kafka but no progress for "
            "FRAUD_ALIGN_STALL_S (they no longer hold the others back)",
            ["topic"],
            registry=r,
        )
        self.degraded_records = Counter(
            "fraud_alignment_degraded_records_total",
            "Records applied past a stalled partition (their decisions may be degraded)",
            ["topic"],
            registry=r,
        )
        self.decisions_degraded = Counter(
            "fraud_decisions_degraded_total",
            "Decisions made while an input they read was stalled: alert only, never a freeze",
            ["rule"],
            registry=r,
        )
        self.freezes = Counter(
            "fraud_freezes_total", "Freeze commands published", ["kind", "action"], registry=r
        )
        self.enforcement_suppressed = Counter(
            "fraud_enforcement_suppressed_total",
            "Freezes a rule asked for that were held back "
            "(kill_switch, rule_shadow, allow_list, snooze, released, guardrail, breaker)",
            ["reason"],
            registry=r,
        )
        self.control_silenced = Counter(
            "fraud_control_silenced_total",
            "Alerts not published because of the control plane (rule_off, allow_list, snooze)",
            ["reason"],
            registry=r,
        )
        self.block_list_alerts = Counter(
            "fraud_block_list_alerts_total",
            "Alerts published for events of block-listed entities",
            registry=r,
        )
        self.control_rejected = Counter(
            "fraud_control_records_rejected_total",
            "Control records refused (the key keeps its last good state)",
            ["kind"],
            registry=r,
        )
        self.control_kill_switch = Gauge(
            "fraud_control_kill_switch", "1 while the control plane's kill switch is on", registry=r
        )
        self.control_records = Gauge(
            "fraud_control_records", "Live control records in the snapshot", ["kind"], registry=r
        )
        self.guardrail_demotions = Counter(
            "fraud_guardrail_demotions_total",
            "Rules this worker demoted to shadow for freezing more than their budget",
            ["rule"],
            registry=r,
        )
        self.breaker_trips = Counter(
            "fraud_breaker_trips_total",
            "Times this worker tripped the global circuit breaker",
            registry=r,
        )
        self.breaker_tripped = Gauge(
            "fraud_breaker_tripped",
            "1 while the circuit breaker is tripped (no new fund freeze)",
            registry=r,
        )
        self.rules_loaded = Gauge(
            "fraud_rules_loaded", "Rules in the loaded rule set", ["ruleset", "version"], registry=r
        )
        self.rule_failures = Counter(
            "fraud_rule_failures_total", "Rule evaluations that raised", ["rule"], registry=r
        )
        self.batch_retries = Counter(
            "fraud_batch_retries_total",
            "Batches retried after an error",
            ["topic", "reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "fraud_batch_processing_seconds",
            "Time to process one batch",
            ["topic"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.last_processed = Gauge(
            "fraud_last_processed_timestamp_seconds",
            "Wall time when a batch of this topic was last processed",
            ["topic"],
            registry=r,
        )
        self.store_up = Gauge("fraud_store_up", "1 when the last Redis call succeeded", registry=r)
        self.store_wipes = Counter(
            "fraud_store_wipes_total",
            "Times the Redis state was found lost (epoch sentinel gone): counters restarted",
            registry=r,
        )
        self.event_to_decision = Histogram(
            "fraud_event_to_decision_seconds",
            "From the input record's Kafka timestamp to its decisions being queued for publish",
            ["topic"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.partitions_blocked = Gauge(
            "fraud_partitions_blocked",
            "Input partitions stopped at a record batch this worker cannot read (see /readyz)",
            ["topic"],
            registry=r,
        )
        self.unreadable_batches = Counter(
            "fraud_undecodable_batches_total",
            "Times an input partition stopped at a record batch this worker could not read",
            ["topic"],
            registry=r,
        )
        self.lag_records = Gauge(
            "fraud_consumer_lag_records",
            "Records behind the partition high watermark",
            ["topic"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "fraud_consumer_lag_seconds",
            "Age of the last processed record while behind (0 when caught up)",
            ["topic"],
            registry=r,
        )
        self.redis_seconds = Histogram(
            "fraud_redis_call_seconds",
            "Redis script call latency",
            ["op"],
            registry=r,
            buckets=REDIS_BUCKETS,
        )
        self.redis_errors = Counter(
            "fraud_redis_errors_total", "Redis calls that failed", ["op", "kind"], registry=r
        )
        self.funds_held = Counter(
            "fraud_funds_held_minor_total",
            "Amount (minor units) named by fund freezes of a single payout",
            ["currency"],
            registry=r,
        )
        self.releases = Counter(
            "fraud_releases_total",
            "Freeze releases published (by this worker), by freeze kind and release type",
            ["kind", "release_type"],
            registry=r,
        )
        self.releases_refused = Counter(
            "fraud_releases_refused_total",
            "Release control records with nothing to release (unknown, already_released)",
            ["reason"],
            registry=r,
        )
        self.release_errors = Counter(
            "fraud_release_errors_total",
            "Rounds of the release task that failed (retried on the next round)",
            registry=r,
        )
        self.build_info = Gauge(
            "fraud_build_info", "Build information", ["version", "python", "faust"], registry=r
        )
        self.build_info.labels(
            _version("fraudstream"), platform.python_version(), _version("faust-streaming")
        ).set(1)
        self.ruleset_info = Gauge(
            "fraud_ruleset_info",
            "1 for the rule set this worker judges by (ruleset_version: its SHA-256; "
            "source: control = a published ruleset record, file = its rules file)",
            ["ruleset_version", "ruleset", "source"],
            registry=r,
        )
        self.ruleset_refused = Gauge(
            "fraud_ruleset_refused",
            "1 while the latest ruleset record this worker read was refused "
            "(it runs the last good rule set instead)",
            registry=r,
        )
        self.merchant_health_bands = Gauge(
            "fraud_merchant_health_merchants",
            "Merchants per health band of their last published snapshot, across every "
            "worker (counted in the store on each band change)",
            ["band"],
            registry=r,
        )
        ProcessCollector(registry=r)

    def observe_blocked(
        self, change: Change, entry: BlockedPartition, current: tuple[BlockedPartition, ...]
    ) -> None:
        """A `BlockedPartitions` listener (called from faust's consumer thread)."""
        if change is Change.BLOCKED:
            self.unreadable_batches.labels(entry.topic).inc()
        self.partitions_blocked.labels(entry.topic).set(
            sum(e.topic == entry.topic for e in current)
        )

    def observe_redis(self, op: str, seconds: float, error: str | None) -> None:
        self.redis_seconds.labels(op).observe(seconds)
        if error is not None:
            self.redis_errors.labels(op, error).inc()

    def observe_health_bands(self, counts: Mapping[str, int]) -> None:
        """Merchants per health band (stream.health_feed's `on_bands`)."""
        for band, n in counts.items():
            self.merchant_health_bands.labels(band).set(n)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"
