"""FHIR search semantics for the few parameters extraction uses, evaluated on raw JSON.

The NDJSON source has no server to search for it, and the HTTP source re-checks what a
server returned (servers differ on ``Period`` edge cases), so both apply these rules:

- ``date`` on a date/dateTime/instant/Period (FHIR R4 search, section 3.1.1.5.5 "date"):
  a value stands for the range its precision implies (``2024-03`` is the whole month);
  ``ge X`` matches when the range ends after X, ``lt Y`` when it starts before Y.
- ``code`` tokens: ``system|code`` matches that exact coding, a bare ``code`` any system.
- the default cohort rule of :func:`is_active_encounter` (others: :mod:`.cohort`).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

ACTIVE_ENCOUNTER_CLASSES = frozenset({"IMP", "ACUTE", "ICU"})
INACTIVE_ENCOUNTER_STATUSES = frozenset({"planned", "cancelled", "entered-in-error"})
OPEN = datetime.max.replace(tzinfo=UTC)


def reference_id(reference: object, resource_type: str) -> str | None:
    """Return the id in ``Type/id`` or ``http://.../Type/id[/_history/n]``, else ``None``."""
    if not isinstance(reference, str):
        return None
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == resource_type and parts[-1]:
        return parts[-1]
    return None


def subject_id(resource: Mapping[str, Any]) -> str | None:
    """Return the Patient id of a resource: its own id, or ``subject`` (R4 path)."""
    if resource.get("resourceType") == "Patient":
        value = resource.get("id")
        return value if isinstance(value, str) else None
    subject = resource.get("subject")
    return reference_id(subject.get("reference"), "Patient") if isinstance(subject, dict) else None


def time_range(value: object) -> tuple[datetime, datetime] | None:
    """Return ``[start, end)`` a FHIR date, dateTime or instant stands for (UTC).

    Every value FHIR allows is placed, years 1 to 9999 included: an end past the last
    representable instant (``9999``, ``9999-12-31``, open-end sentinels) is that instant
    (:data:`OPEN`), so a sentinel reads as "ongoing" instead of stopping the caller.
    """
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        if len(value) == 4:
            start = datetime(int(value), 1, 1, tzinfo=UTC)
            return start, _later(start, days=366 if calendar.isleap(start.year) else 365)
        if len(value) == 7:
            year, month = int(value[:4]), int(value[5:7])
            start = datetime(year, month, 1, tzinfo=UTC)
            return start, _later(start, days=calendar.monthrange(year, month)[1])
        if len(value) == 10:
            start = datetime.fromisoformat(value).replace(tzinfo=UTC)
            return start, _later(start, days=1)
        start = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if start.tzinfo is None:  # FHIR dateTime with time requires a zone; be lenient
            start = start.replace(tzinfo=UTC)
        start = start.astimezone(UTC)
    except (ValueError, OverflowError):  # not a date, or an offset that leaves years 1-9999
        return None
    return start, _later(start, seconds=1)


def _later(start: datetime, **step: float) -> datetime:
    """``start + timedelta(**step)``, or :data:`OPEN` past the last representable instant."""
    try:
        return start + timedelta(**step)
    except OverflowError:
        return OPEN


def period_range(period: object) -> tuple[datetime, datetime] | None:
    """Return ``[start, end)`` of a FHIR Period; a missing end means ongoing."""
    if not isinstance(period, dict):
        return None
    start = time_range(period.get("start"))
    end = time_range(period.get("end"))
    if start is None and end is None:
        return None
    low = start[0] if start else datetime.min.replace(tzinfo=UTC)
    return low, end[1] if end else OPEN


def effective_range(observation: Mapping[str, Any]) -> tuple[datetime, datetime] | None:
    """Return the range of ``Observation.effective[x]`` (dateTime, instant or Period)."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in observation:
            return time_range(observation[key])
    return period_range(observation.get("effectivePeriod"))


#: Years a clinical measurement can carry (MIMIC's shifted dates reach the 2200s).
PLAUSIBLE_YEARS: Final[tuple[int, int]] = (1800, 2500)


def time_problem(resource: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(code, detail)`` when a resource's own time cannot place it: an Observation with no
    readable ``effective[x]`` (``missing-time``) or one dated outside
    :data:`PLAUSIBLE_YEARS` (``implausible-time``: a sentinel such as 9999-12-31), or an
    Observation's ``effectivePeriod`` or an Encounter's ``period`` that ends before it starts
    (``invalid-period``). Else ``None``."""
    rtype = resource.get("resourceType")
    if rtype == "Observation":
        span = effective_range(resource)
        if span is None:
            return "missing-time", "no readable effective[x]: not placed on the timeline"
        if not PLAUSIBLE_YEARS[0] <= span[0].year <= PLAUSIBLE_YEARS[1]:
            return "implausible-time", (
                f"effective[x] in year {span[0].year}, outside {PLAUSIBLE_YEARS[0]}-"
                f"{PLAUSIBLE_YEARS[1]}: not used"
            )
        period = resource.get("effectivePeriod")
    elif rtype == "Encounter":
        period = resource.get("period")
    else:
        return None
    if isinstance(period, dict):
        start, end = time_range(period.get("start")), time_range(period.get("end"))
        if start is not None and end is not None and end[1] <= start[0]:
            return "invalid-period", "the period ends before it starts"
    return None


def overlaps(span: tuple[datetime, datetime] | None, since: datetime, until: datetime) -> bool:
    """True when ``date=ge{since}&date=lt{until}`` matches a value spanning ``span``."""
    return span is not None and span[1] > since and span[0] < until


def matches_codes(resource: Mapping[str, Any], codes: Sequence[str] | None) -> bool:
    """True when ``code`` has a coding matching one token (``system|code`` or ``code``)."""
    if codes is None:
        return True
    concept = resource.get("code")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and any(_token_matches(t, coding) for t in codes):
            return True
    return False


def _token_matches(token: str, coding: Mapping[str, Any]) -> bool:
    if "|" not in token:
        return coding.get("code") == token
    system, code = token.split("|", 1)
    return coding.get("code") == code and (coding.get("system") or "") == system


def is_under_way(encounter: Mapping[str, Any], as_of: datetime) -> bool:
    """Whether an encounter is under way at ``as_of``, whatever its class.

    Under way means: not planned, cancelled or entered in error, and its ``period`` covers
    ``as_of`` (start <= as_of < end, a missing end meaning ongoing). The period decides when
    it exists, so a backfill for a past ``as_of`` sees the encounters of that night; an
    encounter without a usable period start is never under way (an ``in-progress`` status
    alone would put its patient into every night, past and future).
    """
    if encounter.get("status") in INACTIVE_ENCOUNTER_STATUSES:
        return False
    period = encounter.get("period")
    if not isinstance(period, dict) or time_range(period.get("start")) is None:
        return False
    span = period_range(period)
    return span is not None and span[0] <= as_of < span[1]


def is_active_encounter(encounter: Mapping[str, Any], as_of: datetime) -> bool:
    """The default cohort rule: an inpatient (``class`` IMP, ACUTE or ICU) encounter under
    way at ``as_of`` (:func:`is_under_way`). Configurable rules: :mod:`dipro_fhir.fhir.cohort`.
    """
    klass = encounter.get("class")  # R4: Encounter.class is one Coding
    if not isinstance(klass, dict) or klass.get("code") not in ACTIVE_ENCOUNTER_CLASSES:
        return False
    return is_under_way(encounter, as_of)


def last_updated(resource: Mapping[str, Any]) -> datetime | None:
    """Return ``meta.lastUpdated`` as a UTC datetime, or ``None``."""
    meta = resource.get("meta")
    span = time_range(meta.get("lastUpdated")) if isinstance(meta, dict) else None
    return span[0] if span else None
