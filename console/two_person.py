"""The two-person rule, pure: which console actions need a second person,
and who may be that person.

A fund freeze holds a merchant's money, so releasing a large one is a
decision one analyst should not make alone; publishing a rule set changes
what every worker does. Both wait for an approver (role approver or admin)
other than the requester. "Large" is money, compared only within one
currency (integer minor units, `FRAUD_CONSOLE_TWO_PERSON_RELEASE`, e.g.
`EUR:50000,USD:50000`): a fund freeze in a currency the setting does not
name, or one without a value (a freeze of all the merchant's payouts), is
of unknown size and always needs two persons.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from console.users import Role, User
from detectors.money import CURRENCY_CODE

__all__ = ["ApprovalKind", "ReleaseThresholds", "needs_second_person", "refusal_to_approve"]


class ApprovalKind(StrEnum):
    """What a pending request publishes once approved."""

    RELEASE = "release"
    RULESET = "ruleset"


@dataclass(frozen=True, slots=True)
class ReleaseThresholds:
    """Per currency, the largest fund freeze (minor units) one person may
    release. `str()` is the setting's own form, so it round-trips."""

    limits: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, text: str) -> ReleaseThresholds:
        """`EUR:50000,USD:50000`; ValueError naming the bad part."""
        limits: dict[str, int] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            code, sep, amount = part.partition(":")
            code, amount = code.strip(), amount.strip()
            if not sep or CURRENCY_CODE.fullmatch(code) is None:
                raise ValueError(f"{part!r}: expected CUR:amount, e.g. EUR:50000")
            if not amount.isascii() or not amount.isdigit():
                raise ValueError(f"{part!r}: the amount is integer minor units (0 or more)")
            if code in limits:
                raise ValueError(f"{code} is given twice")
            limits[code] = int(amount)
        return cls(tuple(sorted(limits.items())))

    def limit(self, currency: str) -> int | None:
        return dict(self.limits).get(currency)

    def __str__(self) -> str:
        return ",".join(f"{code}:{amount}" for code, amount in self.limits)


def needs_second_person(
    kind: str, amount_minor: int | None, currency: str | None, thresholds: ReleaseThresholds
) -> bool:
    """Whether releasing this freeze waits for an approver: a fund freeze
    above its currency's limit, or of unknown size; never a benefit freeze."""
    if kind != "fund":
        return False
    if amount_minor is None or currency is None:
        return True
    limit = thresholds.limit(currency)
    return limit is None or amount_minor > limit


def refusal_to_approve(requested_by: str, approver: User) -> str | None:
    """Why `approver` may not decide a request (None: they may). Checked on
    the server whatever the page showed."""
    if not approver.role.allows(Role.APPROVER):
        return f"Deciding a request needs the {Role.APPROVER} role."
    if approver.username == requested_by:
        return "A request needs a second person: you cannot decide your own."
    return None
