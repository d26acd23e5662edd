"""A seeded synthetic ICU world: FHIR R4 resources, DICOM chest X-rays and their ground truth.

Used by the embedded demo and by tests: :func:`generate_cohort` streams
:class:`SyntheticPatient` records; :mod:`dipro_fhir.synth.fhir` turns one into FHIR JSON,
:mod:`dipro_fhir.synth.images` into DICOM; :func:`write_files` / :func:`load_into_servers`
put a cohort on disk or into real servers; each patient's :class:`GroundTruth` says what a
correct extraction and mapping must find.
"""

from __future__ import annotations

from dipro_fhir.synth.records import GroundTruth, PairLabel, TruthImage, TruthValue
from dipro_fhir.synth.truth_io import read_truth
from dipro_fhir.synth.world import SyntheticPatient, generate_cohort

__all__ = [
    "GroundTruth",
    "PairLabel",
    "SyntheticPatient",
    "TruthImage",
    "TruthValue",
    "generate_cohort",
    "read_truth",
]
