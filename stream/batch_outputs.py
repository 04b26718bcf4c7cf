"""What one batch yields: the records to publish and the counts the caller
turns into metrics. Shared by the pipeline and its settlement step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from detectors.control_effects import Silence
from detectors.decisions import Alert, Freeze, Suppression
from detectors.rules import Rule
from stream.codec import DeadLetter
from stream.settings import Settings
from stream.store.base import EventStatus

__all__ = ["BatchResult", "OutputRecord", "count", "dead_letter_output"]

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class OutputRecord:
    topic: str
    key: bytes | None
    value: bytes


def dead_letter_output(letter: DeadLetter, settings: Settings, now_ms: int) -> OutputRecord:
    """The `fraud-dlq` record for `letter`, keyed like its source record."""
    wire = letter.to_wire(now_ms, settings.dlq_value_max_bytes)
    return OutputRecord(settings.topics.dlq, letter.record.key, orjson.dumps(wire))


@dataclass(slots=True)
class BatchResult:
    outputs: list[OutputRecord] = field(default_factory=list)
    valid: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # (source topic name, status) → events; per topic because a batch may mix topics
    statuses: dict[tuple[str, EventStatus], int] = field(default_factory=dict)
    valid_by_topic: dict[str, int] = field(default_factory=dict)
    alerts_new: list[Rule] = field(default_factory=list)
    alerts_reemitted: list[Rule] = field(default_factory=list)
    freezes: list[Freeze] = field(default_factory=list)
    rule_failures: dict[str, int] = field(default_factory=dict)
    late_values: int = 0  # aggregate updates refused: older than window + allowed lateness
    late_by_topic: dict[str, int] = field(default_factory=dict)
    degraded: list[Rule] = field(default_factory=list)  # decisions on incomplete inputs
    silenced: dict[Silence, int] = field(default_factory=dict)  # alerts the control plane held
    block_list_alerts: int = 0
    suppressed: dict[Suppression, int] = field(default_factory=dict)  # freezes it held
    # topic → redelivered records not judged again: their outputs were delivered
    settled: dict[str, int] = field(default_factory=dict)
    # alert id → the alert of each freeze the guard let through (stream.health_feed)
    freeze_alerts: dict[str, Alert] = field(default_factory=dict)
    # every alert published by settling incidents, new or republished (stream.health_feed)
    published_alerts: list[Alert] = field(default_factory=list)


def count(counts: dict[K, int], key: K | None, n: int = 1) -> None:
    if key is not None and n:
        counts[key] = counts.get(key, 0) + n
