"""Synthetic cohorts as folders: written once, reused by later runs.

``write_cohort_once`` writes a cohort (FHIR NDJSON, DICOM, ``truth.jsonl``) into a folder
unless it is already complete there; it is written under a ``.partial`` name and renamed, so
an interrupted write is never mistaken for a cohort.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from dipro_fhir.synth.load import TRUTH_FILE, write_files
from dipro_fhir.synth.truth_io import read_truth
from dipro_fhir.synth.world import generate_cohort

#: The start of finished training cohorts' admissions when no reference time is given.
FINISHED_COHORT_END: Final[datetime] = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def write_cohort_once(
    folder: Path, n: int, seed: int, reference: datetime | None, prefix: str
) -> None:
    """Write a synthetic cohort into ``folder`` unless it is already there.

    With a ``reference`` time (a night to score) admissions spread over the 3.5 days before
    it, so most patients are still in the ICU then; without one (training, evaluation) every
    stay has ended, admissions spread over the two months before 2026-11-24.
    """
    if (folder / TRUTH_FILE).exists():
        return
    span = 3.5 if reference is not None else 60.0
    start = (reference or FINISHED_COHORT_END) - timedelta(days=span + (0.5 if reference else 12.0))
    patients = generate_cohort(
        n, seed=seed, start=start, admission_span_days=span, reference_time=reference,
        id_prefix=prefix,
    )  # fmt: skip
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    write_files(patients, tmp)
    tmp.rename(folder)


def cohort_patient_ids(folder: Path) -> list[str]:
    """The patient ids of a written cohort, in cohort order."""
    return [t.patient_id for t in read_truth(folder / TRUTH_FILE)]
