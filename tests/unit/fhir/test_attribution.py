"""Problems belong to their patient, or to no patient: never to whoever is processed first.

The export is what splitting Synthea-style transaction Bundles into NDJSON leaves: resources
reference their patient as ``urn:uuid:<id>`` (the Bundle's ``fullUrl``), and some references
name a patient the export does not hold.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dipro_fhir.core.timeline import PatientId, PatientTimeline
from dipro_fhir.fhir import NdjsonFhirSource
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.imaging.sources import FolderImageSource
from dipro_fhir.mapping.quality import unattributed_quality
from dipro_fhir.run.extract import ExtractOptions, QualityCounter, extract_patient

AS_OF = datetime(2026, 3, 2, 12, tzinfo=UTC)
FIRST = "0b9c7d1e-0000-4000-8000-000000000001"  # processed first
SECOND = "0b9c7d1e-0000-4000-8000-000000000002"  # referenced only by urn:uuid
NOBODY = "0b9c7d1e-0000-4000-8000-0000000000ff"  # in no Patient of the export


def _observation(oid: str, subject: str, hours_before: int) -> dict[str, Any]:
    when = (AS_OF - timedelta(hours=hours_before)).isoformat()
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"lastUpdated": when},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "/min"},
    }


def _encounter(eid: str, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "in-progress",
        "class": {"code": "IMP"},
        "subject": {"reference": subject},
        "period": {"start": (AS_OF - timedelta(days=2)).isoformat()},
    }


@pytest.fixture
def export(tmp_path: Path) -> Path:
    def write(name: str, lines: list[Any]) -> None:
        text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
        (tmp_path / name).write_text(text)

    write("Patient.ndjson", [{"resourceType": "Patient", "id": p} for p in (FIRST, SECOND)])
    write(
        "Encounter.ndjson",
        [_encounter("e1", f"Patient/{FIRST}"), _encounter("e2", f"urn:uuid:{SECOND}")],
    )
    write(
        "Observation.ndjson",
        [
            _observation("o1", f"Patient/{FIRST}", 3),
            *(_observation(f"s{i}", f"urn:uuid:{SECOND}", i + 1) for i in range(3)),
            *(_observation(f"x{i}", f"urn:uuid:{NOBODY}", i + 1) for i in range(2)),
            "{this line is not JSON",
            _observation("o2", f"Patient/{FIRST}", 2),
        ],
    )
    (tmp_path / "dicom").mkdir()
    return tmp_path


def _extract(
    source: NdjsonFhirSource, folder: Path, patient: str, quality: QualityCounter
) -> PatientTimeline:
    options = ExtractOptions(
        window_hours=48,
        crop_size=16,
        max_cxrs=2,
        locator=GeometricRegionLocator(),
        site_tz=ZoneInfo("UTC"),
    )
    result = extract_patient(
        source, FolderImageSource(folder / "dicom"), PatientId(patient), None, AS_OF, options,
        quality=quality,
    )  # fmt: skip
    assert isinstance(result, PatientTimeline)
    return result


def _source_issues(timeline: PatientTimeline) -> list[Any]:
    """The timeline's issues other than its own missing demographics."""
    return [i for i in timeline.issues if i.code != "missing-demographic"]


def test_problems_go_to_their_patient_or_to_no_patient(export: Path) -> None:
    source = NdjsonFhirSource(export)
    quality = QualityCounter()
    first = _extract(source, export, FIRST, quality)
    second = _extract(source, export, SECOND, quality)
    orphans = source.take_issues()

    # The patient processed first gets none of the export's problems.
    assert _source_issues(first) == []
    # The urn:uuid references that name a Patient of the export are that patient's: its
    # Observations are used, and it carries one issue counting them.
    assert int(second.ehr_mask.sum()) == 3
    assert [(i.code, i.resource) for i in _source_issues(second)] == [
        ("urn-uuid-reference", "Encounter"),
        ("urn-uuid-reference", "Observation"),
    ]
    assert "3 subject reference(s)" in _source_issues(second)[1].detail
    # What names nobody, or is not JSON, belongs to no patient, reported once.
    assert sorted(i.code for i in orphans) == [
        "invalid-json",
        "unresolved-reference",
        "unresolved-reference",
    ]
    assert source.take_issues() == []
    quality.add(unattributed_quality(orphans))
    assert dict(quality.summary.unattributed_problems) == {
        "invalid-json": 1,
        "unresolved-reference": 2,
    }
    assert quality.summary.patients == 2


def test_the_order_of_patients_changes_nothing(export: Path) -> None:
    forward, backward = NdjsonFhirSource(export), NdjsonFhirSource(export)
    a1 = _extract(forward, export, FIRST, QualityCounter())
    b1 = _extract(forward, export, SECOND, QualityCounter())
    b2 = _extract(backward, export, SECOND, QualityCounter())
    a2 = _extract(backward, export, FIRST, QualityCounter())
    assert (a1.issues, b1.issues) == (a2.issues, b2.issues)
    assert sorted(forward.take_issues(), key=str) == sorted(backward.take_issues(), key=str)


def test_the_cohort_reads_urn_uuid_subjects_of_encounters_too(export: Path) -> None:
    source = NdjsonFhirSource(export)
    assert list(source.active_encounter_patients(AS_OF)) == [(FIRST, "e1"), (SECOND, "e2")]
