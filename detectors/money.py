"""Money: amounts are integer minor units *of one currency*, and amounts in
different currencies are never added, compared or divided by one another.

Rule files give every money limit per currency (`PerCurrency`); an event in a
currency a limit does not name is outside that limit's rule. The minor-unit
exponents say how to show an amount (JPY has none, KWD three), for people
only: detection never converts between currencies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CURRENCY_CODE",
    "DEFAULT_EXPONENT",
    "MINOR_UNIT_EXPONENTS",
    "PerCurrency",
    "format_minor",
    "minor_unit_exponent",
]

CURRENCY_CODE = re.compile(r"[A-Z]{3}")

# ISO 4217 currencies whose minor unit is not 1/100 (every other one's is).
MINOR_UNIT_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
DEFAULT_EXPONENT = 2


def minor_unit_exponent(currency: str) -> int:
    return MINOR_UNIT_EXPONENTS.get(currency, DEFAULT_EXPONENT)


def format_minor(amount_minor: int, currency: str) -> str:
    """`EUR 1,234.50`, `JPY 10,000`, `KWD 1.250`."""
    exponent = minor_unit_exponent(currency)
    return f"{currency} {amount_minor / 10**exponent:,.{exponent}f}"


@dataclass(frozen=True, slots=True)
class PerCurrency:
    """A limit given per currency, e.g. {EUR: 8000, JPY: 900}. Sorted pairs,
    so equal limits have equal signatures (they become part of aggregate ids)."""

    values: tuple[tuple[str, float], ...]

    @classmethod
    def of(cls, values: Mapping[str, float]) -> PerCurrency:
        return cls(tuple(sorted(values.items())))

    def get(self, currency: str) -> float | None:
        for code, value in self.values:
            if code == currency:
                return value
        return None

    @property
    def currencies(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.values)

    def __str__(self) -> str:
        return ",".join(f"{code}:{_number(value)}" for code, value in self.values)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
