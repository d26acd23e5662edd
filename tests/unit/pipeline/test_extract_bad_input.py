"""Bad input becomes a recorded problem on the patient's timeline, never a crash.

A small synthetic cohort is written as files (the embedded mode's real sources), then
damaged: an invalid Observation, one in an unknown unit, a study whose image is gone, and a
corrupt DICOM file. Extraction must still produce the timeline and name each problem.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.timeline import PatientId, PatientTimeline
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.imaging.sources import FolderImageSource
from dipro_fhir.run.extract import ExtractOptions, StageTimer, extract_patient
from dipro_fhir.synth import generate_cohort, read_truth
from dipro_fhir.synth.load import write_files

AS_OF = datetime(2026, 3, 1, 12, tzinfo=UTC)
OPTIONS = ExtractOptions(48, 16, 6, GeometricRegionLocator(), UTC)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bad")
    patients = generate_cohort(
        3, seed=4, start=AS_OF - timedelta(days=4), admission_span_days=1, reference_time=AS_OF
    )
    write_files(patients, out, image_size=(128, 128))
    return out


def _observation(patient: str, oid: str, value: object, unit: str) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": (AS_OF - timedelta(hours=3)).isoformat(),
        "issued": (AS_OF - timedelta(hours=2)).isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": unit,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }


def _extract(cohort: Path, patient: str) -> PatientTimeline | PatientFailure:
    return extract_patient(
        NdjsonFhirSource(cohort),
        FolderImageSource(cohort / "dicom"),
        PatientId(patient),
        None,
        AS_OF,
        OPTIONS,
        StageTimer(),
    )


def test_damaged_inputs_are_recorded_on_the_timeline(cohort: Path) -> None:
    truth = next(iter(read_truth(cohort / "truth.jsonl")))
    patient = truth.patient_id
    with (cohort / "Observation.ndjson").open("a") as out:
        bad = _observation(patient, "bad-value", "eighty", "/min")  # not a decimal
        out.write(json.dumps(bad) + "\n")
        out.write(json.dumps(_observation(patient, "odd-unit", 80, "furlong/fortnight")) + "\n")
    images = truth.images_before(AS_OF)
    assert len(images) >= 2, "the fixture patient needs two CXRs"
    missing, corrupt = images[-1], images[-2]
    for path in (cohort / "dicom" / missing.study_uid).iterdir():
        path.unlink()
    corrupt_file = next((cohort / "dicom" / corrupt.study_uid).glob("*.dcm"))
    data = corrupt_file.read_bytes()
    corrupt_file.write_bytes(data[: len(data) // 2])

    timeline = _extract(cohort, patient)

    assert isinstance(timeline, PatientTimeline)
    codes = {(i.code, i.resource) for i in timeline.issues}
    assert ("invalid-resource", "Observation/bad-value") in codes
    assert ("unknown-unit", "Observation/odd-unit") in codes
    found = {i.code for i in timeline.issues}
    assert found & {"image-missing", "no-frontal-image"}, found
    assert "corrupt-dicom" in found
    assert missing.instance_uid not in {i.instance_uid for i in timeline.images}
    assert corrupt.instance_uid not in {i.instance_uid for i in timeline.images}


def test_an_invalid_patient_fails_only_that_patient(cohort: Path) -> None:
    truths = list(read_truth(cohort / "truth.jsonl"))
    lines = (cohort / "Patient.ndjson").read_text().splitlines()
    broken = json.loads(lines[1])
    broken["gender"] = 42  # not a code
    lines[1] = json.dumps(broken)
    (cohort / "Patient.ndjson").write_text("\n".join(lines) + "\n")
    failure = _extract(cohort, truths[1].patient_id)
    assert isinstance(failure, PatientFailure)
    assert (failure.stage, failure.reason) == ("extract", "invalid-resource")
    assert isinstance(_extract(cohort, truths[2].patient_id), PatientTimeline)
