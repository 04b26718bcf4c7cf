"""Conditions on an event's fields (`where:` in a rule file)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any

from detectors.events import Event
from detectors.money import PerCurrency

__all__ = ["Condition", "Op"]


class Op(StrEnum):
    EQ = "=="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    IN = "in"
    NOT_IN = "not_in"
    EXISTS = "exists"
    ABSENT = "absent"


_BINARY: dict[Op, Callable[[Any, Any], bool]] = {
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.LT: operator.lt,
    Op.LE: operator.le,
}
ORDERING = frozenset({Op.GT, Op.GE, Op.LT, Op.LE})


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: Op
    # A scalar, a tuple for IN / NOT_IN, or a PerCurrency for a money field
    # (an event in a currency it does not name does not match).
    value: Any = None

    def matches(self, event: Event) -> bool:
        actual = getattr(event, self.field, None)
        if isinstance(actual, Enum):
            actual = actual.value
        if self.op is Op.EXISTS:
            return actual is not None
        if self.op is Op.ABSENT:
            return actual is None
        if actual is None:
            return False
        if self.op is Op.IN:
            return actual in self.value
        if self.op is Op.NOT_IN:
            return actual not in self.value
        if self.op in ORDERING and type(actual) is str:
            return False
        value = self.value
        if type(value) is PerCurrency:
            value = value.get(event.currency)
            if value is None:
                return False
        return _BINARY[self.op](actual, value)

    def signature(self) -> str:
        value = ",".join(map(str, self.value)) if isinstance(self.value, tuple) else self.value
        return f"{self.field}{self.op.value}{value}"

    def describe(self) -> str:
        return (
            self.signature() if self.op not in (Op.EXISTS, Op.ABSENT) else f"{self.field} {self.op}"
        )
