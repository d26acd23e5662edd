"""Pick the frontal chest radiograph of a study and date it.

DiPro uses one frontal film per study (the paper: the latest AP per MIMIC study, reference
§1.3, §7.2). Hospitals file PA, AP, lateral and decubitus views in the same study, often in
separate series, with varying metadata quality, so the choice is ranked:

1. ViewPosition (0018,5101) ``PA`` (best quality, standard erect film);
2. ViewPosition ``AP`` (portable, the ICU norm);
3. View Code Sequence (0054,0220) meaning postero-anterior / antero-posterior / frontal;
4. Series Description mentioning PA, AP or frontal;
5. fallback: no view information at all and a near-square film (rows/columns within
   0.75..1.35, which lateral films rarely miss but is weak evidence; the reason says so).

Anything that says lateral or decubitus (``LATERAL``, ``LL``, ``RL``, ``LLD``, ``RLD``,
``LAT`` in a description or view code) is excluded. Ties go to the latest acquisition, then
the highest SOP Instance UID, so the choice is deterministic.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

from pydicom.dataset import Dataset
from pydicom.valuerep import DA, DT, TM

_EXCLUDED_VIEWS = frozenset({"LATERAL", "LL", "RL", "LLD", "RLD", "LAT"})
_LATERAL_TEXT = re.compile(r"\b(lat|lateral|decubitus|ll|rl)\b", re.IGNORECASE)
_FRONTAL_TEXT = re.compile(
    r"\b(pa|ap|frontal|postero-?anterior|antero-?posterior)\b", re.IGNORECASE
)


@dataclass(frozen=True, slots=True)
class ImageCandidate:
    """What the header says about one instance (no pixels)."""

    study_uid: str
    series_uid: str
    instance_uid: str
    modality: str = ""
    view_position: str = ""
    view_code_meaning: str = ""
    series_description: str = ""
    body_part: str = ""
    rows: int = 0
    columns: int = 0
    acquired: datetime | None = None
    frames: int = 1
    patient_ids: tuple[str, ...] = ()  # PatientID and Other Patient IDs of the header

    @classmethod
    def from_dataset(cls, ds: Dataset, site_tz: tzinfo = UTC) -> ImageCandidate:
        """Read a header (a file read with ``stop_before_pixels`` or WADO-RS metadata)."""
        codes = ds.get("ViewCodeSequence") or []
        meaning = str(codes[0].get("CodeMeaning", "")) if len(codes) else ""
        return cls(
            study_uid=str(ds.get("StudyInstanceUID", "")),
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            instance_uid=str(ds.get("SOPInstanceUID", "")),
            modality=str(ds.get("Modality", "") or "").upper(),
            view_position=str(ds.get("ViewPosition", "") or "").strip().upper(),
            view_code_meaning=meaning,
            series_description=str(ds.get("SeriesDescription", "") or ""),
            body_part=str(ds.get("BodyPartExamined", "") or "").upper(),
            rows=int(ds.get("Rows", 0) or 0),
            columns=int(ds.get("Columns", 0) or 0),
            acquired=acquisition_time(ds, site_tz),
            frames=_int(ds.get("NumberOfFrames"), default=1),
            patient_ids=header_patient_ids(ds),
        )


def header_patient_ids(ds: Dataset) -> tuple[str, ...]:
    """The patient identifiers a header names: PatientID (0010,0020) and the Other Patient
    IDs (0010,1000 and the sequence 0010,1002), blanks left out."""
    found = [str(ds.get("PatientID", "") or "")]
    other = ds.get("OtherPatientIDs")
    if other:
        found.extend(str(v) for v in (other if isinstance(other, list | tuple) else [other]))
    for item in ds.get("OtherPatientIDsSequence") or []:
        found.append(str(item.get("PatientID", "") or ""))
    return tuple(dict.fromkeys(v.strip() for v in found if v and v.strip()))


def _int(value: object, default: int) -> int:
    try:
        return max(int(str(value)), 1) if value not in (None, "") else default
    except ValueError:
        return default


@dataclass(frozen=True, slots=True)
class FrontalChoice:
    """The chosen candidate (``None`` if none is frontal) and why, as a stable code."""

    candidate: ImageCandidate | None
    reason: str


def is_lateral(c: ImageCandidate) -> bool:
    """Whether anything in the header says lateral or decubitus."""
    return (
        c.view_position in _EXCLUDED_VIEWS
        or bool(_LATERAL_TEXT.search(c.view_code_meaning))
        or bool(_LATERAL_TEXT.search(c.series_description))
    )


def _rank(c: ImageCandidate) -> tuple[int, str] | None:
    if is_lateral(c):
        return None
    if c.view_position == "PA":
        return 0, "view-position-pa"
    if c.view_position == "AP":
        return 1, "view-position-ap"
    if _FRONTAL_TEXT.search(c.view_code_meaning):
        return 2, "view-code"
    if _FRONTAL_TEXT.search(c.series_description):
        return 3, "series-description"
    if not c.view_position and c.rows and c.columns and 0.75 <= c.rows / c.columns <= 1.35:
        return 4, "aspect-fallback"
    return None


def select_frontal(candidates: Sequence[ImageCandidate]) -> FrontalChoice:
    """Choose the frontal film among a study's instances (ranking in the module docstring).

    Returns:
        The best candidate with its reason code (``view-position-pa``, ``view-position-ap``,
        ``view-code``, ``series-description``, ``aspect-fallback``), or ``None`` with
        ``no-candidates`` / ``no-frontal``.
    """
    if not candidates:
        return FrontalChoice(None, "no-candidates")
    oldest = datetime.min.replace(tzinfo=UTC)
    ranked = [(r, c) for c in candidates if (r := _rank(c)) is not None]
    if not ranked:
        return FrontalChoice(None, "no-frontal")
    best = min(
        ranked,
        key=lambda rc: (rc[0][0], -(rc[1].acquired or oldest).timestamp(), _neg(rc[1])),
    )
    return FrontalChoice(best[1], best[0][1])


def _neg(c: ImageCandidate) -> tuple[int, ...]:
    """Sort key preferring the highest SOP Instance UID (numeric components)."""
    return tuple(-int(p) for p in c.instance_uid.split(".") if p.isdigit())


def _parse_offset(value: object) -> tzinfo | None:
    """Timezone Offset From UTC (0008,0201), ``&ZZXX`` (PS3.3 C.12.1.1)."""
    m = re.fullmatch(r"([+-])(\d\d)(\d\d)", str(value or "").strip())
    if not m:
        return None
    delta = timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    return timezone(-delta if m.group(1) == "-" else delta)


def _combine(day: object, clock: object) -> datetime | None:
    try:
        d = DA(str(day)) if day else None
        t = TM(str(clock)) if clock else None
    except ValueError:
        return None
    if not isinstance(d, date):
        return None
    return datetime.combine(d, t if isinstance(t, time) else time(0, 0))


def acquisition_time(ds: Dataset, site_tz: tzinfo = UTC) -> datetime | None:
    """When the film was taken, as an aware UTC datetime.

    Order: AcquisitionDateTime (0008,002A, with its own offset if present), then
    AcquisitionDate+Time, ContentDate+Time, SeriesDate+Time, StudyDate+Time. A value
    without an offset is local time in TimezoneOffsetFromUTC (0008,0201) when present,
    else in ``site_tz`` (PS3.3 C.12.1.1.8).

    Returns:
        The time in UTC, or ``None`` when no usable date is present.
    """
    local: datetime | None = None
    raw = ds.get("AcquisitionDateTime")
    if raw:
        try:
            local = DT(str(raw))
        except ValueError:
            local = None
    for prefix in ("Acquisition", "Content", "Series", "Study"):
        if local is not None:
            break
        local = _combine(ds.get(f"{prefix}Date"), ds.get(f"{prefix}Time"))
    if local is None:
        return None
    if local.tzinfo is None:
        local = local.replace(tzinfo=_parse_offset(ds.get("TimezoneOffsetFromUTC")) or site_tz)
    return local.astimezone(UTC)
