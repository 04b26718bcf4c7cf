"""One batch of records from one input topic → the records to publish.

This is the single code path shared by the live worker and (later) the
backtest: decode and validate, update the store, evaluate rules in the pure
core, settle incidents, and build output records. It knows nothing of faust;
the caller supplies records and the current time and publishes the outputs.

Every step is idempotent, so the caller may retry a whole batch after any
transient failure without changing a count or an id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from detectors import velocity
from detectors.decisions import AlertCandidate
from detectors.events import Order, Topic
from detectors.rules import VelocityRule
from detectors.windows import retention_ms
from stream.codec import DeadLetter, Decoded, SourceRecord, decode
from stream.settings import Settings
from stream.store.base import (
    AppendStatus,
    EventStore,
    IncidentClaim,
    IncidentStatus,
    LogAppend,
    LogObservation,
)

log = logging.getLogger(__name__)

ORDER_LOG = "orders"


@dataclass(frozen=True, slots=True)
class OutputRecord:
    topic: str
    key: bytes | None
    value: bytes


@dataclass(slots=True)
class BatchResult:
    outputs: list[OutputRecord] = field(default_factory=list)
    valid: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    appended: dict[AppendStatus, int] = field(default_factory=dict)
    alerts_new: list[str] = field(default_factory=list)
    alerts_reemitted: list[str] = field(default_factory=list)
    rule_failures: dict[str, int] = field(default_factory=dict)


class Pipeline:
    def __init__(self, settings: Settings, store: EventStore) -> None:
        self._settings = settings
        self._store = store
        self._rule: VelocityRule = settings.velocity_rule()
        self._retention_ms = retention_ms(
            self._rule.window_ms,
            settings.allowed_lateness_s * 1000,
            settings.dedup_horizon_s * 1000,
        )

    @property
    def rule(self) -> VelocityRule:
        return self._rule

    async def process(
        self, topic: Topic, records: Sequence[SourceRecord], now_ms: int
    ) -> BatchResult:
        result = BatchResult()
        decoded: list[Decoded] = []
        for record in records:
            item = decode(topic, record, self._settings.max_event_bytes)
            if isinstance(item, DeadLetter):
                result.dead_letters.append(item)
                result.outputs.append(self._dead_letter_output(item, now_ms))
            else:
                decoded.append(item)
        result.valid = len(decoded)
        if topic is Topic.ORDERS:
            await self._user_velocity(decoded, now_ms, result)
        return result

    def _dead_letter_output(self, item: DeadLetter, now_ms: int) -> OutputRecord:
        wire = item.to_wire(now_ms, self._settings.dlq_value_max_bytes)
        return OutputRecord(self._settings.topics.dlq, item.record.key, orjson.dumps(wire))

    async def _user_velocity(
        self, decoded: list[Decoded], now_ms: int, result: BatchResult
    ) -> None:
        orders = [(d, d.event) for d in decoded if isinstance(d.event, Order)]
        rule = self._rule
        appends = [
            LogAppend(
                rule.entity_type,
                o.user_id,
                ORDER_LOG,
                o.event_id,
                o.occurred_at_ms,
                rule.window_ms,
                self._retention_ms,
            )
            for _, o in orders
        ]
        observations = await self._store.append_and_read(appends)
        claims: list[IncidentClaim] = []
        for (d, order), obs in zip(orders, observations, strict=True):
            result.appended[obs.status] = result.appended.get(obs.status, 0) + 1
            if obs.status is AppendStatus.TOO_LATE:
                continue
            # Duplicates are judged too: if a crash hit between the two store
            # calls, this is the only chance to settle the incident.
            candidate = self._evaluate(order, d.record, obs, now_ms, result)
            if candidate is not None:
                claims.append(self._claim(candidate, order, d.record))
        outcomes = await self._store.claim_incidents(claims)
        for claim, outcome in zip(claims, outcomes, strict=True):
            if outcome.status is IncidentStatus.NEW:
                result.alerts_new.append(claim.alert_id)
                result.outputs.append(self._alert_output(claim.entity_id, claim.payload))
            elif outcome.status is IncidentStatus.REEMIT and outcome.payload is not None:
                result.alerts_reemitted.append(outcome.alert_id)
                result.outputs.append(self._alert_output(claim.entity_id, outcome.payload))

    def _evaluate(
        self,
        order: Order,
        record: SourceRecord,
        obs: LogObservation,
        now_ms: int,
        result: BatchResult,
    ) -> AlertCandidate | None:
        """A failing rule is recorded (metric, log), never allowed to stop the batch."""
        try:
            return velocity.evaluate(
                self._rule,
                entity_id=order.user_id,
                trigger_event_id=order.event_id,
                trigger_topic=record.topic,
                trigger_ms=order.occurred_at_ms,
                log=obs.entries,
                now_ms=now_ms,
                log_truncated=obs.truncated,
            )
        except Exception:
            log.exception("rule %s failed on event %s", self._rule.rule_id, order.event_id)
            result.rule_failures[self._rule.rule_id] = (
                result.rule_failures.get(self._rule.rule_id, 0) + 1
            )
            return None

    def _claim(
        self, candidate: AlertCandidate, order: Order, record: SourceRecord
    ) -> IncidentClaim:
        alert = candidate.alert
        return IncidentClaim(
            entity_type=alert.entity_type,
            entity_id=alert.entity_id,
            rule_id=alert.rule_id,
            alert_id=alert.alert_id,
            start_ms=candidate.incident_start_ms,
            end_ms=candidate.incident_end_ms,
            cooldown_ms=candidate.cooldown_ms,
            trigger_event_id=order.event_id,
            trigger_position=record.position.token(),
            payload=orjson.dumps(alert.to_wire()),
            ttl_ms=self._retention_ms + candidate.cooldown_ms + self._rule.window_ms,
        )

    def _alert_output(self, entity_id: str, payload: bytes) -> OutputRecord:
        return OutputRecord(self._settings.topics.alerts, entity_id.encode(), payload)
