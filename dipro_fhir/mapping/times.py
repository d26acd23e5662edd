"""Parsing of FHIR R4 ``date``, ``dateTime`` and ``instant`` strings into UTC datetimes.

FHIR R4 §2.24.0 (datatypes): a ``dateTime`` is ``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or a full
time that SHALL carry a timezone offset; an ``instant`` is always full with a timezone. We
parse with a regular expression rather than ``datetime.fromisoformat`` so that the accepted
grammar is exactly FHIR's (e.g. more than six fractional digits are allowed and truncated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, Literal

Precision = Literal["year", "month", "day", "time"]

_PATTERN: Final = re.compile(
    r"(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})(?:\.(?P<f>\d+))?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?"
)


@dataclass(frozen=True, slots=True)
class FhirTime:
    """A parsed FHIR time: the earliest instant it denotes, in UTC, and its precision."""

    value: datetime
    precision: Precision


def parse_fhir_time(text: object) -> FhirTime | None:
    """Parse a FHIR ``date``/``dateTime``/``instant``; ``None`` when it is not one.

    Partial dates stand for their first instant (``1974`` -> 1974-01-01T00:00Z); date-only
    values are taken at 00:00 UTC. A time without a timezone is invalid (FHIR R4 dateTime).
    """
    if not isinstance(text, str):
        return None
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        return None
    g = match.groupdict()
    try:
        if g["h"] is None:
            precision: Precision = "day" if g["d"] else ("month" if g["mo"] else "year")
            value = datetime(int(g["y"]), int(g["mo"] or 1), int(g["d"] or 1), tzinfo=UTC)
            return FhirTime(value, precision)
        micro = int((g["f"] or "0")[:6].ljust(6, "0"))
        tz = UTC if g["tz"] == "Z" else _offset(g["tz"])
        value = datetime(
            int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"]), int(g["mi"]), int(g["s"]),
            micro, tzinfo=tz,
        )  # fmt: skip
        return FhirTime(value.astimezone(UTC), "time")
    except (ValueError, OverflowError):
        return None


def _offset(text: str) -> timezone:
    sign = -1 if text[0] == "-" else 1
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 14 or minutes > 59:
        raise ValueError("timezone offset out of range")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def require_aware(value: datetime, name: str) -> None:
    """Raise ``ValueError`` when ``value`` is a naive datetime (a caller bug)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
