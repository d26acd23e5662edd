"""The Hannover development set's CSV as patient records, in days since the hospital
admission, and the clock that turns those days into site times (see ``hannover_cohort.py``
for what the CSV says and which conventions apply)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

SITE_TZ = ZoneInfo("Europe/Berlin")
#: Hours of day (site time) of what the CSV dates by day only.
HOURS = {"admission": time(6), "icu_in": time(6, 30), "lab": time(7), "film": time(8),
         "icu_out": time(18)}  # fmt: skip
#: CSV lab -> (LOINC, display) for the labs written (see module doc).
LABS = {
    "pco2": ("11557-6", "Carbon dioxide [Partial pressure] in Blood"),
    "po2": ("11556-8", "Oxygen [Partial pressure] in Blood"),
}


@dataclass(frozen=True, slots=True)
class Film:
    """One film: its image id, modality, view and day since admission."""

    image_id: str
    modality: str
    view: str
    day: int


@dataclass(frozen=True, slots=True)
class PatientRecord:
    """One patient of the CSV, in days since the hospital admission."""

    pid: str
    sex: str
    films: tuple[Film, ...]
    icu: tuple[int, int | None] | None
    death_day: int | None
    labs: tuple[tuple[str, int, float], ...]


def _num(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _day(base: int, offset: str) -> int | None:
    value = _num(offset)
    return None if value is None else base + round(value)


def read_records(data: Path) -> list[PatientRecord]:
    """The CSV's rows grouped by patient; days since admission, labs without repeats."""
    rows: dict[str, list[dict[str, str]]] = {}
    with (data / "data.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault(row["patient_id"], []).append(row)
    return [_record(pid, found) for pid, found in sorted(rows.items())]


def _record(pid: str, rows: list[dict[str, str]]) -> PatientRecord:
    films, labs = [], set()
    icu_in = icu_out = death = None
    for row in rows:
        day = -round(float(row["admission_offset"]))
        films.append(Film(row["image_id"], row["modality"], row["projection"].upper(), day))
        icu_in = icu_in if icu_in is not None else _day(day, row["icu_admission_offset"])
        icu_out = icu_out if icu_out is not None else _day(day, row["icu_release_offset"])
        death = death if death is not None else _day(day, row["death_offset"])
        for lab in LABS:
            when, value = _day(day, row[f"{lab}_offset"]), _num(row[f"{lab}_val"])
            if when is not None and value is not None:
                labs.add((lab, when, value))
    icu = None if icu_in is None else (icu_in, icu_out)
    films.sort(key=lambda f: (f.day, f.image_id))
    return PatientRecord(pid, rows[0]["sex"], tuple(films), icu, death, tuple(sorted(labs)))


Clock = Callable[[int, str], datetime]


def clock_for(record: PatientRecord, anchor: date) -> Clock:
    """Day since admission and event kind -> aware site time (last film on ``anchor``)."""
    last = record.films[-1].day

    def at(day: int, kind: str) -> datetime:
        when = anchor + timedelta(days=day - last)
        return datetime.combine(when, HOURS[kind], tzinfo=SITE_TZ)

    return at
