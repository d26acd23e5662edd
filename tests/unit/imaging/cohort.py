"""Synthetic chest studies for the imaging tests: several patients, frontal + lateral
series per study, both photometrics, 12 and 16 bits, CR and DX, J2K and uncompressed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from dipro_fhir.synth.radiograph import random_anatomy, render_chest, to_dicom, write_dicom

ROOT = "1.2.826.0.1.3680043.10.1234"
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class StudySpec:
    patient_id: str
    study_uid: str
    frontal: Dataset | None
    lateral: Dataset
    frontal_view: str


def build_cohort(folder: Path, *, patients: int = 3, size: int = 384) -> list[StudySpec]:
    """Write every instance under ``folder`` and return what was written."""
    out: list[StudySpec] = []
    for p in range(patients):
        anatomy = random_anatomy(np.random.default_rng(100 + p))
        for s in range(2):
            k = 2 * p + s
            study = f"{ROOT}.{p + 1}.{s + 1}"
            view = "PA" if k % 2 == 0 else "AP"
            common = {
                "patient_id": f"synth-{p + 1}",
                "patient_name": f"Synth^Patient{p + 1}",
                "birth_date": None,
                "sex": "F" if p % 2 else "M",
                "study_uid": study,
                "acquired": T0 + timedelta(hours=20 * k),
                "modality": "CR" if k % 3 else "DX",
                "bits_stored": 12 if k % 2 else 16,
                "photometric": "MONOCHROME1" if k % 2 else "MONOCHROME2",
                "compress_j2k": k % 2 == 1,
            }
            sev = {"pleural_effusion": {"left_costophrenic_angle": 0.2 * s}}
            front = render_chest(k, anatomy, sev, view=view, size=(size, size))
            lat = render_chest(k, anatomy, sev, view="LATERAL", size=(size, size))
            f_ds = to_dicom(
                front,
                series_uid=f"{study}.1",
                instance_uid=f"{study}.1.1",
                view_position=view,
                **common,  # type: ignore[arg-type]
            )
            l_ds = to_dicom(
                lat,
                series_uid=f"{study}.2",
                instance_uid=f"{study}.2.1",
                view_position="LATERAL",
                **common,  # type: ignore[arg-type]
            )
            write_dicom(f_ds, folder / f"{k}-frontal.dcm")
            write_dicom(l_ds, folder / f"{k}-lateral.dcm")
            out.append(StudySpec(common["patient_id"], study, f_ds, l_ds, view))  # type: ignore[arg-type]
    return out
