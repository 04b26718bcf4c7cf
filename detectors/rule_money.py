"""Money in rule files: every money limit names its currency.

A threshold over a sum, a balance or a ratio with money on one side, a
`min_volume` over a sum, and a `where` value on a `*_minor` field are amounts
of money. A bare number would silently compare yen with cents, so each is
written per currency (`threshold: {EUR: 8000, JPY: 900}`), and an event in a
currency the rule does not name is not judged by it (a condition does not
match it). Only 0 is the same in every currency, so `subsidy_minor > 0` may
stand alone. Counts, distinct counts, money-over-money fractions, surge
factors and ages are currency-free and take plain numbers.
"""

from __future__ import annotations

from typing import Any, Protocol

from detectors.money import CURRENCY_CODE, PerCurrency
from detectors.rules_conditions import Op

__all__ = [
    "EXAMPLE",
    "condition_value",
    "per_currency",
    "same_currencies",
    "threshold",
    "volume",
]

EXAMPLE = "e.g. {EUR: 8000, JPY: 900}"


class Parser(Protocol):
    """What these checks need of the rule parser (`rule_syntax.Parser`):
    recording a mistake at a path, which returns the exception to raise."""

    def fail(self, path: str, message: str) -> Exception: ...


def per_currency(p: Parser, raw: Any, path: str, integers: bool = False) -> PerCurrency:
    """{CODE: amount, ...} with ISO 4217 codes; amounts in minor units."""
    if not isinstance(raw, dict) or not raw:
        raise p.fail(path, f"money is given per currency, {EXAMPLE}")
    values: dict[str, float] = {}
    for code, amount in raw.items():
        if not isinstance(code, str) or CURRENCY_CODE.fullmatch(code) is None:
            raise p.fail(path, f"{code!r} is not an ISO 4217 currency code like EUR")
        kinds = (int,) if integers else (int, float)
        if isinstance(amount, bool) or not isinstance(amount, kinds):
            what = "an integer" if integers else "a number"
            raise p.fail(f"{path}.{code}", f"expected {what} of minor units")
        values[code] = amount
    return PerCurrency.of(values)


def threshold(p: Parser, raw: Any, money: bool, path: str) -> PerCurrency | None:
    """The per-currency threshold of a money metric (`money`); None for a
    currency-free one (whose plain number the caller checks)."""
    if money:
        if not isinstance(raw, dict):
            raise p.fail(path, f"a money threshold names its currency, {EXAMPLE}")
        return per_currency(p, raw, path)
    if isinstance(raw, dict):
        raise p.fail(path, "this metric is currency-free (a count, fraction or factor): a number")
    return None


def volume(p: Parser, value: Any, money: bool, path: str) -> int | PerCurrency:
    """A `min_volume`: money per currency (`money`) or a count."""
    if money:
        if not isinstance(value, dict):
            raise p.fail(path, f"this volume is money: name its currency, {EXAMPLE}")
        amounts = per_currency(p, value, path, integers=True)
        if any(v < 0 for _, v in amounts.values):
            raise p.fail(path, "must not be negative")
        return amounts
    if isinstance(value, bool) or not isinstance(value, int):
        raise p.fail(path, "expected an integer (this volume is a count)")
    if value < 0:
        raise p.fail(path, "must not be negative")
    return value


def same_currencies(p: Parser, limit: Any, volume: Any, path: str) -> None:
    """A rule judges one set of currencies: its threshold and volume name the same."""
    both = isinstance(limit, PerCurrency) and isinstance(volume, PerCurrency)
    if both and limit.currencies != volume.currencies:
        raise p.fail(
            f"{path}.min_volume",
            f"names {', '.join(volume.currencies)}; the threshold names "
            f"{', '.join(limit.currencies)}",
        )


def condition_value(p: Parser, field: str, op: Op, value: Any, path: str) -> Any:
    """A `where` value on a money field: per currency, or 0."""
    if not field.endswith("_minor"):
        return value
    if op in (Op.IN, Op.NOT_IN):
        raise p.fail(path, f"compare money with ==, !=, <, <=, > or >= per currency, {EXAMPLE}")
    if value == 0 and type(value) is int:
        return 0
    if not isinstance(value, dict):
        raise p.fail(path, f"a money value names its currency (only 0 may stand alone), {EXAMPLE}")
    return per_currency(p, value, path)
