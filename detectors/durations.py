"""Durations as rule authors write them ("90s", "10m", "24h", "30d") ↔ milliseconds."""

from __future__ import annotations

import re

__all__ = ["format_duration_ms", "parse_duration_ms"]

_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"([0-9]+)(ms|s|m|h|d|w)")


def parse_duration_ms(text: str) -> int:
    """`"10m"` → 600000. Raises ValueError with the accepted forms."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"expected a duration like 90s, 10m, 24h, 30d; got {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_duration_ms(ms: int) -> str:
    """The shortest exact form: 600000 → "10m"."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
