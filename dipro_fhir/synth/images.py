"""DICOM objects of a synthetic patient's chest X-ray studies.

Rendering is the expensive part of the synthetic world, so it happens here, on demand, one
study at a time, and never inside :func:`~dipro_fhir.synth.world.generate_cohort`. Pixels come
from the imaging engineer's renderer (``synth.radiograph``) with the patient's static anatomy
and the study's finding severity; the UIDs and acquisition times are those of the
``ImagingStudy`` resources, so FHIR and DICOMweb agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from dipro_fhir.synth.radiograph import render_chest, to_dicom
from dipro_fhir.synth.records import SynthStudy

if TYPE_CHECKING:
    from dipro_fhir.synth.world import SyntheticPatient

#: Default rendered size ``(height, width)``: small enough to load hundreds of studies fast.
DEFAULT_SIZE = (256, 256)


def render_study(
    patient: SyntheticPatient, study: SynthStudy, *, size: tuple[int, int] = DEFAULT_SIZE
) -> Iterator[Dataset]:
    """Yield the Part 10 datasets of one study (frontal first, then a lateral if any).

    Args:
        patient: The patient the study belongs to.
        study: One of ``patient.studies``.
        size: Rendered ``(height, width)`` in pixels.
    """
    severity = study.severity_map()
    demo = patient.demographics
    for image in study.images:
        pixels = (
            faulty_film(image.render_seed, size)
            if image.faulty
            else render_chest(
                image.render_seed, patient.anatomy, severity, view=image.view_position, size=size
            )
        )
        yield to_dicom(
            pixels,
            patient_id=patient.patient_id,
            patient_name=f"SYNTHETIC^{patient.patient_id.replace('-', '')}",
            birth_date=demo.birth_date,
            sex="F" if demo.gender == "female" else "M",
            study_uid=study.study_uid,
            series_uid=image.series_uid,
            instance_uid=image.instance_uid,
            acquired=study.started,
            modality=study.modality,
            view_position=image.view_position,
            bits_stored=image.bits_stored,
            photometric=image.photometric,
            compress_j2k=image.compress_j2k,
            accession_number=study.imaging_study_id.replace("-", "")[-16:],
        )


def faulty_film(seed: int, size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """What a failing detector delivers: a flat, saturated field with noise and no chest."""
    rng = np.random.default_rng(seed)
    return np.clip(0.92 + rng.normal(0.0, 0.02, size), 0.0, 1.0).astype(np.float32)


def render_patient(
    patient: SyntheticPatient, *, size: tuple[int, int] = DEFAULT_SIZE
) -> Iterator[Dataset]:
    """Yield every DICOM instance of a patient, study by study."""
    for study in patient.studies:
        yield from render_study(patient, study, size=size)
