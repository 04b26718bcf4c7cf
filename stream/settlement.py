"""Settling a judged batch: claim each decision's incident in the store,
derive the freezes, let the enforcement guard (freeze budgets, the
breaker) and the book of released freezes hold what must not be made, and
append the records to publish. The pipeline's last step, apart so each
module stays one job."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import orjson

from detectors.control import ControlRecord
from detectors.control_effects import freeze_suppression
from detectors.control_snapshot import ControlSnapshot
from detectors.decisions import (
    DEGRADED_TRACK,
    INCIDENT_EPOCH_MS,
    AlertCandidate,
    Freeze,
    Suppression,
    combine_freezes,
    freeze_for,
    incident_base,
    incident_epoch,
)
from detectors.events import Event, Payout
from detectors.rules import ActionKind, Rule
from stream.batch_outputs import BatchResult, OutputRecord, count
from stream.codec import Decoded
from stream.enforcement_guard import Candidate, EnforcementGuard, marked
from stream.releases import unreleased
from stream.settings import Settings
from stream.store.base import EventStore, IncidentClaim, IncidentStatus
from stream.store.freezes import FreezeBook

__all__ = ["Pending", "Settlement"]


@dataclass(slots=True)
class Pending:
    decoded: Decoded
    rule: Rule
    candidate: AlertCandidate
    degraded: bool = False
    suppressed: Suppression | None = None  # the control plane holds its freeze


@dataclass(slots=True)
class Settlement:
    """`freeze_book` None: freezes are published unregistered (a backtest's
    scratch run)."""

    settings: Settings
    store: EventStore
    guard: EnforcementGuard
    freeze_book: FreezeBook | None = None

    async def settle(
        self, pending: list[Pending], result: BatchResult, control: ControlSnapshot, now_ms: int
    ) -> list[ControlRecord]:
        """Settle incidents; returns the control records the guard issued (a
        demotion, a trip), for the caller to steer by at once. A degraded
        decision claims an incident of its own track (`<rule>~degraded`): it
        alerts once per incident, for a human, never freezes, and leaves the
        rule's own incident to the first complete decision, which can then
        still freeze."""
        claims = [self._claim(p) for p in pending]
        outcomes = await self.store.claim_incidents(claims)
        guarded: list[Candidate] = []
        for p, claim, outcome in zip(pending, claims, outcomes, strict=True):
            if outcome.status is IncidentStatus.OPEN:
                continue
            if outcome.status is IncidentStatus.NEW:
                result.alerts_new.append(p.rule)
            else:
                result.alerts_reemitted.append(p.rule)
            payload = outcome.payload or claim.payload
            alert = dataclasses.replace(p.candidate.alert, alert_id=outcome.alert_id)
            result.published_alerts.append(alert)
            result.outputs.append(
                OutputRecord(self.settings.topics.alerts, alert.entity_id.encode(), payload)
            )
            if p.degraded:
                result.degraded.append(p.rule)
                continue  # may alert on incomplete facts, never freeze on them
            if p.suppressed is not None:
                count(result.suppressed, p.suppressed)
                continue
            freeze = freeze_for(p.rule, alert, _merchant(p.decoded.event), _payout(p.decoded.event))
            if freeze is not None:
                held = freeze_suppression(control, freeze, p.decoded.event.occurred_at_ms)
                at = len(result.outputs) - 1  # its alert
                guarded.append(Candidate(p.rule, freeze, alert, p.decoded.event, at, held))
        return await self._guard(guarded, result, control, now_ms)

    async def _guard(
        self, guarded: list[Candidate], result: BatchResult, control: ControlSnapshot, now_ms: int
    ) -> list[ControlRecord]:
        """Freeze budgets and the breaker (stream.enforcement_guard): what they
        refuse is held, its alert marked; their records steer this worker at once."""
        verdicts = await self.guard.judge(guarded, control, now_ms)
        freezes_by_event: dict[str, list[Freeze]] = {}
        for c, held in zip(guarded, verdicts.held, strict=True):
            if held is None:
                freezes_by_event.setdefault(c.event.event_id, []).append(c.freeze)
                result.freeze_alerts[c.alert.alert_id] = c.alert
                continue
            count(result.suppressed, held)
            if (payload := marked(c.alert, held)) is not None:
                old = result.outputs[c.at]
                result.outputs[c.at] = OutputRecord(old.topic, old.key, payload)
        freezes_by_event = await self._unreleased(freezes_by_event, result)
        for freezes in freezes_by_event.values():
            for f in combine_freezes(freezes):
                result.freezes.append(f)
                topic = (
                    self.settings.topics.fund_freezes
                    if f.kind is ActionKind.FUND_FREEZE
                    else self.settings.topics.benefit_freezes
                )
                result.outputs.append(
                    OutputRecord(topic, f.subject_id.encode(), orjson.dumps(f.to_wire()))
                )
        return list(verdicts.records)

    async def _unreleased(
        self, by_event: dict[str, list[Freeze]], result: BatchResult
    ) -> dict[str, list[Freeze]]:
        """Registered as published; a released one is dropped (stream.releases)."""
        if self.freeze_book is None or not by_event:
            return by_event
        kept, held_back = await unreleased(self.freeze_book, by_event)
        count(result.suppressed, Suppression.RELEASED, held_back)
        return kept

    def _claim(self, p: Pending) -> IncidentClaim:
        alert = p.candidate.alert
        track = f"{alert.rule_id}{DEGRADED_TRACK}" if p.degraded else alert.rule_id
        return IncidentClaim(
            entity_type=p.rule.entity,
            entity_ids=p.candidate.entity_ids,
            rule_id=track,
            base=incident_base(track, alert.rule_version, p.candidate.entity_ids),
            start_ms=p.candidate.incident_start_ms,
            end_ms=p.candidate.incident_end_ms,
            cooldown_ms=p.candidate.cooldown_ms,
            trigger_event_id=p.decoded.event.event_id,
            trigger_position=p.decoded.record.position.token(),
            payload=orjson.dumps(alert.to_wire()),
            # Long enough to keep numbering incidents through an epoch.
            ttl_ms=max(self.settings.dedup_horizon_s * 1000, INCIDENT_EPOCH_MS)
            + p.candidate.cooldown_ms
            + p.rule.window_ms,
            # Keep incidents as long as a crossing could still belong to them.
            retention_ms=max(
                self.settings.dedup_horizon_s * 1000,
                p.rule.window_ms
                + p.candidate.cooldown_ms
                + self.settings.allowed_lateness_s * 1000,
            ),
            epoch=incident_epoch(p.candidate.incident_end_ms),
        )


def _merchant(event: Event) -> str | None:
    return getattr(event, "merchant_id", None)


def _payout(event: Event) -> tuple[str, int, str] | None:
    if isinstance(event, Payout):
        return (event.payout_id, event.amount_minor, event.currency)
    return None
