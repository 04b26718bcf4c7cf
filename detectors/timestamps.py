"""Event time on the wire: RFC 3339 text ↔ epoch milliseconds.

Every timestamp fraudstream reads or writes goes through these two functions,
so the accepted range (years 1970-2099) and the emitted form are one
decision, shared by the contract's validator, its JSON Schema and every
output.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, timedelta, timezone

__all__ = ["RFC3339_PATTERN", "format_rfc3339_ms", "parse_rfc3339_ms"]

# Years 1970-2099 only: anything else is a broken clock, and keeping times in
# range keeps every window and id arithmetic safe. [0-9], not \d: Python's \d
# also matches other scripts' digits.
_YEAR = "(19[7-9][0-9]|20[0-9]{2})"
_RFC3339 = re.compile(
    _YEAR + r"-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
# The same grammar as a JSON Schema `pattern` (the contract's schema documents).
RFC3339_PATTERN = (
    "^" + _YEAR + r"-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)


def parse_rfc3339_ms(text: str) -> int:
    """Parse an RFC 3339 timestamp *with* an offset into epoch milliseconds.

    A time without an offset is ambiguous (whose local time?), so it is a
    contract violation rather than a silent guess.
    """
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise ValueError(
            "expected RFC 3339 with offset and a year 1970-2099, e.g. 2026-11-02T12:00:00.123Z"
        )
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    if m.group(8) and hour < 24 and minute < 60 and second < 60:
        # The usual case (UTC, no leap second), on every event's hot path:
        # calendar arithmetic with the day looked up once per date.
        seconds = _epoch_day(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        return seconds * 1000 + int((frac + "000")[:3])
    if m.group(8):
        tz = UTC
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise ValueError("offset out of range")
        sign = -1 if m.group(9) == "-" else 1
        tz = timezone(sign * timedelta(hours=oh, minutes=om))
    # RFC 3339 allows second 60 (leap second); fold it onto the next second's start.
    leap = second == 60
    dt = datetime(year, month, day, hour, minute, 59 if leap else second, tzinfo=tz)
    delta = dt - _EPOCH
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + int((frac + "000")[:3])
    return ms + (1000 if leap else 0)


@functools.lru_cache(maxsize=4096)
def _epoch_day(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01; raises ValueError for a date that does not exist."""
    return (date(year, month, day) - _EPOCH_DATE).days


def format_rfc3339_ms(ms: int) -> str:
    """Epoch milliseconds → `YYYY-MM-DDTHH:MM:SS.mmmZ` (the form fraudstream emits)."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
