"""Writing a synthetic cohort to NDJSON + DICOM files + truth.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom

from dipro_fhir.synth import generate_cohort, read_truth
from dipro_fhir.synth.load import RESOURCE_TYPES, TRUTH_FILE, write_files
from tests.unit.synth.conftest import START


def test_write_files_leaves_bulk_ndjson_dicom_and_truth(tmp_path: Path) -> None:
    patients = list(generate_cohort(3, seed=21, start=START))
    seen: list[int] = []
    report = write_files(iter(patients), tmp_path, image_size=(128, 128), progress=seen.append)
    assert seen == [1, 2, 3]
    for resource_type in RESOURCE_TYPES:
        lines = (tmp_path / f"{resource_type}.ndjson").read_text().splitlines()
        assert len(lines) == report.count(resource_type) > 0
        assert all(json.loads(line)["resourceType"] == resource_type for line in lines)
    assert report.count("Patient") == 3
    files = sorted((tmp_path / "dicom").glob("*/*.dcm"))
    expected = {
        (s.study_uid, i.instance_uid) for p in patients for s in p.studies for i in s.images
    }
    assert {(f.parent.name, f.stem) for f in files} == expected
    assert report.instances == len(expected)
    assert list(read_truth(tmp_path / TRUTH_FILE)) == [p.truth for p in patients]


def test_written_dicom_has_preamble_and_decodes(tmp_path: Path) -> None:
    patients = list(generate_cohort(4, seed=2, start=START))
    write_files(patients, tmp_path, image_size=(96, 96))
    for path in (tmp_path / "dicom").glob("*/*.dcm"):
        assert path.read_bytes()[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array
        assert pixels.shape == (96, 96)
        assert np.ptp(pixels) > 0
