"""A FHIR R4 Patient -> DiPro's 17 demographic columns (reference §1.5, §7.2).

Column order is ``dipro.vocab.DEMOGRAPHIC_COLUMNS``. Continuous fields stay raw (age in
completed years, height cm, weight kg; NaN when unknown): cohort mean imputation and z-scoring
use the checkpoint's statistics and belong to scoring. One-hot groups:

* gender (``Patient.gender``): ``female`` -> F, ``male`` -> M; ``other``/``unknown``/absent ->
  both 0 (absent also gives a ``missing-demographic`` issue).
* race (US Core race and ethnicity extensions, OMB codes, urn:oid:2.16.840.1.113883.6.238):
  ethnicity 2135-2 Hispanic or Latino -> HISPANIC/LATINO (it wins, as MIMIC's
  "HISPANIC/LATINO - ..." strings are their own bucket); else race 2106-3 -> WHITE, 2054-5 ->
  BLACK/AFRICAN AMERICAN, 2028-9 -> ASIAN; 1002-5, 2076-8, 2131-1 or more than one race ->
  OTHER; no race category (extension absent, or only UNK/ASKU) -> UNKNOWN/UNABLE TO OBTAIN/
  PATIENT DECLINED TO ANSWER.
* language (``Patient.communication``, the ``preferred`` one, else the first): BCP-47 primary
  subtag ``en`` -> ENGLISH; anything else or absent -> ``?`` (MIMIC's "unknown").
* marital status (``Patient.maritalStatus``, v3-MaritalStatus): M, T (domestic partner),
  C (common law), P (polygamous) -> MARRIED; D, A (annulled), I (interlocutory),
  L (legally separated) -> DIVORCED; S, U (unmarried) -> SINGLE; W -> WIDOWED; UNK or absent
  -> all four 0 with a ``missing-demographic`` issue (MIMIC filled the cohort's mode; that
  statistic belongs to the checkpoint, not to mapping).

Age: completed years at ``as_of``. A partial birthDate stands for the middle of its range
(``1974`` -> 1974-07-02, ``1974-12`` -> 1974-12-16), so the age error is at most half the
range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

import numpy as np

from dipro.vocab import DEMOGRAPHIC_COLUMNS
from dipro_fhir.core.timeline import FloatArray, MappingIssue
from dipro_fhir.mapping.observations import resource_ref
from dipro_fhir.mapping.times import parse_fhir_time, require_aware

US_CORE_RACE: Final[str] = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
US_CORE_ETHNICITY: Final[str] = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"

#: OMB race category code -> DiPro race column suffix.
OMB_RACE: Final[Mapping[str, str]] = {
    "2106-3": "WHITE",
    "2054-5": "BLACK/AFRICAN AMERICAN",
    "2028-9": "ASIAN",
    "1002-5": "OTHER",
    "2076-8": "OTHER",
    "2131-1": "OTHER",
}
HISPANIC_OMB: Final[str] = "2135-2"
RACE_UNKNOWN: Final[str] = "UNKNOWN/UNABLE TO OBTAIN/PATIENT DECLINED TO ANSWER"

#: v3-MaritalStatus code -> DiPro marital column suffix.
MARITAL: Final[Mapping[str, str]] = {
    "M": "MARRIED",
    "T": "MARRIED",
    "C": "MARRIED",
    "P": "MARRIED",
    "D": "DIVORCED",
    "A": "DIVORCED",
    "I": "DIVORCED",
    "L": "DIVORCED",
    "S": "SINGLE",
    "U": "SINGLE",
    "W": "WIDOWED",
}

_COLUMN: Final = {name: i for i, name in enumerate(DEMOGRAPHIC_COLUMNS)}


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def _codes(concept: object) -> list[str]:
    return [c for c in (_dict(x).get("code") for x in _list(_dict(concept).get("coding")))
            if isinstance(c, str)]  # fmt: skip


#: The oldest plausible age; an older one is a typo or a placeholder (year 0001, 1800-01-01).
MAX_AGE_YEARS: Final[int] = 125


def age_years(birth_date: object, as_of: datetime) -> float | None:
    """Completed years from a FHIR ``birthDate`` (full or partial) to ``as_of``, or None."""
    parsed = parse_fhir_time(birth_date)
    if parsed is None or parsed.precision == "time":
        return None
    born = parsed.value.date()
    if parsed.precision == "year":
        born = date(born.year, 7, 2)
    elif parsed.precision == "month":
        born = date(born.year, born.month, 16)
    today = as_of.date()
    if born > today:
        return None
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return float(years)


def birth_date_problem(birth_date: object, as_of: datetime) -> str | None:
    """Why a readable ``birthDate`` is not a plausible age at ``as_of`` (born after it, or
    more than :data:`MAX_AGE_YEARS` before it), else ``None``. The age is not given (it may
    identify a patient)."""
    parsed = parse_fhir_time(birth_date)
    if parsed is None or parsed.precision == "time":
        return None
    if parsed.value.date() > as_of.date():
        return "born after the as-of time: age not used"
    age = age_years(birth_date, as_of)
    if age is not None and age > MAX_AGE_YEARS:
        return f"an age over {MAX_AGE_YEARS} years: not used"
    return None


def _omb_codes(patient: Mapping[str, Any], url: str) -> list[str]:
    codes: list[str] = []
    for ext in _list(patient.get("extension")):
        if _dict(ext).get("url") != url:
            continue
        for sub in _list(_dict(ext).get("extension")):
            s = _dict(sub)
            code = _dict(s.get("valueCoding")).get("code")
            if s.get("url") == "ombCategory" and isinstance(code, str):
                codes.append(code)
    return codes


def race_bucket(patient: Mapping[str, Any]) -> str:
    """The DiPro race column suffix for a Patient (see the module docstring)."""
    if HISPANIC_OMB in _omb_codes(patient, US_CORE_ETHNICITY):
        return "HISPANIC/LATINO"
    buckets = {OMB_RACE[c] for c in _omb_codes(patient, US_CORE_RACE) if c in OMB_RACE}
    if not buckets:
        return RACE_UNKNOWN
    return buckets.pop() if len(buckets) == 1 else "OTHER"


def language_bucket(patient: Mapping[str, Any]) -> str:
    """``ENGLISH`` when the preferred (else first) language is ``en``; otherwise ``?``."""
    comms = [_dict(c) for c in _list(patient.get("communication"))]
    preferred = [c for c in comms if c.get("preferred") is True] or comms
    if not preferred:
        return "?"
    codes = _codes(preferred[0].get("language"))
    primary = codes[0].split("-")[0].lower() if codes else ""
    return "ENGLISH" if primary == "en" else "?"


def encode_demographics(
    patient: Mapping[str, Any],
    as_of: datetime,
    height_cm: float | None,
    weight_kg: float | None,
) -> tuple[FloatArray, list[MappingIssue]]:
    """Encode a raw FHIR Patient as DiPro's 17 demographic columns.

    Args:
        patient: The Patient resource as FHIR JSON.
        as_of: The scoring time (timezone-aware); age is taken at this time.
        height_cm: Height for the stay, or ``None``.
        weight_kg: Weight for the stay, or ``None``.

    Returns:
        float32 ``[17]`` in ``DEMOGRAPHIC_COLUMNS`` order, and the issues met.
    """
    require_aware(as_of, "as_of")
    patient = _dict(patient)
    ref = resource_ref(patient)
    where = ref.reference if ref else None
    issues: list[MappingIssue] = []
    out = np.zeros(len(DEMOGRAPHIC_COLUMNS), dtype=np.float32)
    age = age_years(patient.get("birthDate"), as_of)
    implausible = birth_date_problem(patient.get("birthDate"), as_of)
    if implausible is not None:
        issues.append(MappingIssue("implausible-birth-date", where, implausible))
        age = None
    elif age is None:
        issues.append(MappingIssue("missing-demographic", where, "birthDate"))
    out[_COLUMN["age"]] = math.nan if age is None else age
    for column, value in (("height", height_cm), ("weight", weight_kg)):
        usable = value is not None and math.isfinite(value)
        out[_COLUMN[column]] = value if usable and value is not None else math.nan
    gender = patient.get("gender")
    if gender in ("female", "male"):
        out[_COLUMN["gender_F" if gender == "female" else "gender_M"]] = 1.0
    elif gender is None:
        issues.append(MappingIssue("missing-demographic", where, "gender"))
    out[_COLUMN[f"race_{race_bucket(patient)}"]] = 1.0
    out[_COLUMN[f"language_{language_bucket(patient)}"]] = 1.0
    marital = [MARITAL[c] for c in _codes(patient.get("maritalStatus")) if c in MARITAL]
    if marital:
        out[_COLUMN[f"marital_{marital[0]}"]] = 1.0
    else:
        issues.append(MappingIssue("missing-demographic", where, "maritalStatus"))
    return out, issues
