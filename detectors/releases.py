"""Releases of freezes: the `action: release` records of the freeze topics,
and what the worker remembers of a published freeze to release it later.

A freeze ends by expiry (its `expires_at` passed: `release_type: expired`,
`actor: system`) or by a human through a `release` control record. Either
way exactly one release per freeze is meant to be published; crashes can
repeat it, so its id is a digest of what identifies it (the freeze, the
type, the control record that asked for it) and a repeat carries the same
id and the same bytes: consumers de-duplicate on `release_id`.

Pure: no clock (an expired release is dated at the freeze's own
`expires_at`, a manual one at its control record's `issued_at`, so any
worker that publishes it builds identical bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from detectors.decisions import Freeze, deterministic_id
from detectors.release_types import ReleaseType
from detectors.rules import ActionKind
from detectors.rules_entities import EntityType
from detectors.timestamps import format_rfc3339_ms

__all__ = [
    "EXPIRED",
    "SYSTEM_ACTOR",
    "ActiveFreeze",
    "FreezeRelease",
    "ReleaseSpec",
    "release_for",
]


SYSTEM_ACTOR = "system"


def _dumps(wire: dict[str, Any]) -> bytes:
    return json.dumps(wire, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class ActiveFreeze:
    """A published freeze as the store keeps it until it is released: enough
    to key and describe its release, and the value a fund freeze holds."""

    freeze_id: str
    kind: ActionKind
    subject_type: EntityType
    subject_id: str
    scope: str
    rule_id: str
    expires_at_ms: int
    amount_minor: int | None = None
    currency: str | None = None

    @classmethod
    def of(cls, freeze: Freeze) -> ActiveFreeze:
        return cls(
            freeze.freeze_id,
            freeze.kind,
            freeze.subject_type,
            freeze.subject_id,
            freeze.scope,
            freeze.rule_id,
            freeze.expires_at_ms,
            freeze.amount_minor,
            freeze.currency,
        )

    def to_json(self) -> bytes:
        return _dumps(
            {
                "id": self.freeze_id,
                "kind": self.kind.value,
                "st": self.subject_type.value,
                "sid": self.subject_id,
                "scope": self.scope,
                "rule": self.rule_id,
                "exp": self.expires_at_ms,
                "amt": self.amount_minor,
                "cur": self.currency,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ActiveFreeze:
        w = json.loads(raw)
        return cls(
            w["id"],
            ActionKind(w["kind"]),
            EntityType(w["st"]),
            w["sid"],
            w["scope"],
            w["rule"],
            int(w["exp"]),
            w["amt"],
            w["cur"],
        )


@dataclass(frozen=True, slots=True)
class ReleaseSpec:
    """What a release says beyond the freeze it ends. `issued_at_ms` None:
    dated at the freeze's expiry (the `expired` release)."""

    release_type: ReleaseType
    reason_code: str
    actor: str
    reason: str
    control_id: str | None = None
    issued_at_ms: int | None = None

    def to_json(self) -> bytes:
        return _dumps(
            {
                "type": self.release_type.value,
                "code": self.reason_code,
                "actor": self.actor,
                "reason": self.reason,
                "control_id": self.control_id,
                "at": self.issued_at_ms,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> ReleaseSpec:
        w = json.loads(raw)
        return cls(
            ReleaseType(w["type"]), w["code"], w["actor"], w["reason"], w["control_id"], w["at"]
        )


EXPIRED = ReleaseSpec(
    ReleaseType.EXPIRED, ReleaseType.EXPIRED.value, SYSTEM_ACTOR, "expires_at passed"
)


@dataclass(frozen=True, slots=True)
class FreezeRelease:
    """An `action: release` record, keyed like its freeze (the subject id) so
    it follows the freeze in its partition."""

    release_id: str
    freeze: ActiveFreeze
    spec: ReleaseSpec
    issued_at_ms: int

    def key(self) -> bytes:
        return self.freeze.subject_id.encode()

    def to_wire(self) -> dict[str, Any]:
        f, spec = self.freeze, self.spec
        wire: dict[str, Any] = {
            "release_id": self.release_id,
            "action": "release",
            "releases_freeze_id": f.freeze_id,
            "release_type": spec.release_type.value,
            "reason_code": spec.reason_code,
            "actor": spec.actor,
            "reason": spec.reason,
            "rule_id": f.rule_id,
            "scope": f.scope,
            "issued_at": format_rfc3339_ms(self.issued_at_ms),
        }
        if spec.control_id is not None:
            wire["control_id"] = spec.control_id
        if f.kind is not ActionKind.FUND_FREEZE:
            return {**wire, "subject_type": f.subject_type.value, "subject_id": f.subject_id}
        wire["merchant_id"] = f.subject_id
        if f.amount_minor is not None:
            wire["amount_minor"] = f.amount_minor
            wire["currency"] = f.currency
        return wire

    def to_json(self) -> bytes:
        return _dumps(self.to_wire())


def release_for(freeze: ActiveFreeze, spec: ReleaseSpec) -> FreezeRelease:
    """The release of `freeze` that `spec` describes: the same inputs give the
    same id and the same bytes, whichever worker builds it and how often."""
    release_id = deterministic_id(
        "rl", freeze.freeze_id, spec.release_type.value, spec.control_id or ""
    )
    at_ms = freeze.expires_at_ms if spec.issued_at_ms is None else spec.issued_at_ms
    return FreezeRelease(release_id, freeze, spec, at_ms)
