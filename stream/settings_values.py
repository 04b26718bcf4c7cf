"""How FRAUD_* values are read: each converter takes the raw string and
raises ValueError saying what was expected (stream.settings adds the
variable's name, and never echoes a secret)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from detectors.money import CURRENCY_CODE, PerCurrency

__all__ = [
    "MIN_SECRET_LENGTH",
    "boolean",
    "money_caps",
    "namespace",
    "non_negative",
    "non_negative_float",
    "positive",
    "ring_size",
    "secret",
    "share",
]

T = TypeVar("T")


def positive(conv: Callable[[str], T]) -> Callable[[str], T]:
    def check(raw: str) -> T:
        value = conv(raw)
        if value <= 0:  # type: ignore[operator]
            raise ValueError("must be positive")
        return value

    return check


def non_negative(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def ring_size(raw: str) -> int:
    """FRAUD_COUNTED_EVENTS: 0 to 1000 (the alert contract lists at most
    1000 counted events, and each is a field of its count's hash)."""
    value = non_negative(raw)
    if value > 1000:
        raise ValueError("at most 1000")
    return value


def non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:  # also rejects nan
        raise ValueError("must not be negative")
    return value


NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def namespace(raw: str) -> str:
    """Key prefix: no hash-tag braces (they would move keys between cluster
    slots) and no glob characters (the scratch-namespace cleanup SCANs by it)."""
    if NAMESPACE_PATTERN.fullmatch(raw) is None:
        raise ValueError("use 1-64 letters, digits, '.', '_' or '-'")
    return raw


MIN_SECRET_LENGTH = 32


def secret(raw: str) -> str:
    if len(raw.encode()) < MIN_SECRET_LENGTH:
        # Never echo the value: the error message reaches logs.
        raise ValueError(f"too short: use at least {MIN_SECRET_LENGTH} random characters")
    return raw


def share(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:  # also rejects nan
        raise ValueError("expected a share between 0 (excluded) and 1")
    return value


def money_caps(raw: str) -> PerCurrency:
    """`EUR:5000000,JPY:800000`: integer minor units per ISO 4217 currency."""
    caps: dict[str, float] = {}
    for item in raw.split(","):
        code, sep, amount = item.strip().partition(":")
        if not sep or CURRENCY_CODE.fullmatch(code) is None or not amount.isdigit():
            raise ValueError(f"{item.strip()!r}: expected CUR:amount_minor, e.g. EUR:5000000")
        if code in caps:
            raise ValueError(f"{code} given twice")
        caps[code] = int(amount)
    return PerCurrency.of(caps)


def boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")
