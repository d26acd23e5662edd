"""A world of nights: stays admitted day after day, seen as each night's run sees them.

The monitor (issue 25) is judged over weeks of nights, with outcomes that arrive only after
discharge and data that may drift from a given night on. :func:`nightly_world` generates every
stay once, whole (:func:`~dipro_fhir.synth.world.generate_cohort` without a reference time,
the :mod:`~dipro_fhir.synth.drift` changes applied), admissions spread from ``lead_days``
before the first night to the last. :func:`view_as_of` cuts one stay back to what FHIR holds
at a time, exactly as ``generate_cohort`` with that reference time would have made it: a stay
not ended is ``in-progress``, nothing dated later exists, a death is recorded at discharge.

:func:`write_night` writes a night's FHIR NDJSON and truth (the films are written once for the
whole world, :func:`write_world_images`, and the night's ImagingStudies point at them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from dipro_fhir.synth.drift import Drift, SubgroupOutcome, apply_drifts
from dipro_fhir.synth.images import DEFAULT_SIZE
from dipro_fhir.synth.load import DICOM_DIR, LoadReport, write_files
from dipro_fhir.synth.world import SyntheticPatient, generate_cohort, ground_truth


@dataclass(frozen=True, slots=True)
class NightlyWorld:
    """Whole stays and the nights they are scored on.

    Attributes:
        first_night: The as-of time of night 0.
        nights: How many nights.
        patients: Every stay, whole, with the drifts applied.
    """

    first_night: datetime
    nights: int
    patients: tuple[SyntheticPatient, ...]

    def night(self, k: int) -> datetime:
        """The as-of time of night ``k`` (a day after night ``k - 1``)."""
        return self.first_night + timedelta(days=k)

    def view(self, as_of: datetime) -> list[SyntheticPatient]:
        """Every stay admitted before ``as_of``, as FHIR holds it then."""
        return [v for v in (view_as_of(p, as_of) for p in self.patients) if v is not None]


def night_start(world: NightlyWorld, k: int) -> datetime:
    """When the data night ``k`` is the first to see begins: the previous night's as-of time
    (a drift "from night k" starts here)."""
    return world.night(k - 1)


def view_as_of(patient: SyntheticPatient, as_of: datetime) -> SyntheticPatient | None:
    """A whole stay as FHIR holds it at ``as_of`` (``None`` before its admission)."""
    stay = patient.stay
    if stay.admitted >= as_of:
        return None
    if stay.discharged <= as_of:
        return patient  # ended: FHIR holds all of it, as generated
    finished = False
    cutoff = stay.discharged if finished else as_of
    observations = tuple(
        o for o in patient.observations if o.effective < cutoff and o.issued <= cutoff
    )
    studies = tuple(s for s in patient.studies if s.started < cutoff)
    seen = replace(stay, finished=finished)
    truth = ground_truth(patient.patient_id, seen, observations, studies, finished)
    return replace(patient, stay=seen, observations=observations, studies=studies, truth=truth)


def nightly_world(
    *,
    nights: int,
    first_night: datetime,
    admissions_per_day: float,
    seed: int,
    lead_days: float = 10.0,
    id_prefix: str = "night",
    drifts: Sequence[Drift] = (),
) -> NightlyWorld:
    """Generate the stays of ``nights`` nights, admitted evenly from ``lead_days`` before the
    first night to the last one.

    Args:
        nights: Nights scored.
        first_night: The as-of time of night 0 (timezone-aware).
        admissions_per_day: Mean admissions per day (an ICU census of about 4.5 times this).
        seed: The world's seed.
        lead_days: Days of admissions before the first night (a full unit on night 0).
        id_prefix: Prefix of every id.
        drifts: What changes, and from when.
    """
    span = lead_days + nights
    inverted = [d for d in drifts if isinstance(d, SubgroupOutcome)]
    patients = generate_cohort(
        round(admissions_per_day * span),
        seed=seed,
        start=first_night - timedelta(days=lead_days),
        admission_span_days=span,
        id_prefix=id_prefix,
        outcome_inverted=(lambda demo, admitted: any(d.inverts(demo, admitted) for d in inverted))
        if inverted
        else None,
    )
    return NightlyWorld(first_night, nights, tuple(apply_drifts(p, drifts) for p in patients))


def write_night(
    world: NightlyWorld, as_of: datetime, folder: Path, *, films: Path | None = None
) -> LoadReport:
    """The FHIR NDJSON and ``truth.jsonl`` of the world at ``as_of``, without rendering films.

    Every stay admitted by then is written (Patient, Encounter, studies and reports: what
    outcomes are read from), with the Observations of the stays under way only: a stay that
    has ended is no night's input, and its Observations would only make the files big (its
    truth then holds no values either). With ``films`` (the folder of
    :func:`write_world_images`), ``folder/dicom`` holds the films of the stays under way
    (hard links, copies across file systems), so a night's image source indexes only the
    films it can use.
    """
    patients = [
        replace(p, observations=(), truth=replace(p.truth, values=())) if p.stay.finished else p
        for p in world.view(as_of)
    ]
    report = write_files(patients, folder, images=False)
    if films is not None:
        for patient in patients:
            for study in patient.studies if not patient.stay.finished else ():
                source = films / DICOM_DIR / study.study_uid
                if source.is_dir():
                    _link_folder(source, folder / DICOM_DIR / study.study_uid)
    return report


def _link_folder(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        try:
            os.link(file, target / file.name)
        except OSError:  # another file system
            shutil.copy2(file, target / file.name)


def write_world_images(
    world: NightlyWorld, folder: Path, *, image_size: tuple[int, int] = DEFAULT_SIZE
) -> LoadReport:
    """Every film of the world, once, into ``folder/dicom`` (and the whole world's NDJSON)."""
    return write_files(world.patients, folder, image_size=image_size)
