"""NdjsonFhirSource on Bulk Data style files: lazy per-patient index, bad lines reported."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dipro_fhir.core.errors import ResourceNotFound
from dipro_fhir.fhir import FhirSource, NdjsonFhirSource

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _obs(oid: str, patient: str, when: datetime, code: str = "8867-4") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"lastUpdated": when.isoformat()},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when.isoformat(),
    }


def _write(path: Path, lines: list[Any]) -> None:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "Patient.ndjson", [{"resourceType": "Patient", "id": p} for p in "ab"])
    _write(
        tmp_path / "Observation.ndjson",
        [
            _obs("o1", "a", T0),
            "{not json",
            _obs("o2", "b", T0 + timedelta(hours=1)),
            {"resourceType": "Observation", "id": "orphan"},
            _obs("o3", "a", T0 + timedelta(hours=30), code="59408-5"),
        ],
    )
    _write(tmp_path / "Observation.2.ndjson", [_obs("o4", "a", T0 + timedelta(hours=2))])
    _write(
        tmp_path / "Group.ndjson",
        [
            {
                "resourceType": "Group",
                "id": "g",
                "type": "person",
                "actual": True,
                "member": [
                    {"entity": {"reference": "Patient/b"}},
                    {"entity": {"reference": "Patient/a"}, "inactive": True},
                ],
            }
        ],
    )
    return tmp_path


def test_ndjson_source_satisfies_the_protocol(export_dir: Path) -> None:
    assert isinstance(NdjsonFhirSource(export_dir), FhirSource)


def test_observations_come_from_every_part_file_within_the_window(export_dir: Path) -> None:
    source = NdjsonFhirSource(export_dir)
    found = source.observations("a", since=T0, until=T0 + timedelta(days=1))
    assert sorted(o["id"] for o in found) == ["o1", "o4"]
    coded = source.observations("a", since=T0, until=T0 + timedelta(days=2), codes=["59408-5"])
    assert [o["id"] for o in coded] == ["o3"]


def test_bad_lines_are_reported_once_and_never_raised(export_dir: Path) -> None:
    source = NdjsonFhirSource(export_dir)
    list(source.observations("a", since=T0, until=T0 + timedelta(days=9)))
    list(source.patients_with_data_since(T0, T0 + timedelta(days=9)))
    issues = source.take_issues()
    assert sorted(i.code for i in issues) == ["invalid-json", "no-subject"]
    assert all("Observation.ndjson" in i.detail for i in issues)
    assert source.take_issues() == []


def test_patient_lookup_and_missing_patient(export_dir: Path) -> None:
    source = NdjsonFhirSource(export_dir)
    assert source.patient("b")["id"] == "b"
    with pytest.raises(ResourceNotFound):
        source.patient("zzz")


def test_patients_with_data_since_is_sorted_and_deduplicated(export_dir: Path) -> None:
    source = NdjsonFhirSource(export_dir)
    assert list(source.patients_with_data_since(T0, T0 + timedelta(days=3))) == ["a", "b"]
    later = T0 + timedelta(hours=3)
    assert list(source.patients_with_data_since(later, T0 + timedelta(days=3))) == ["a"]


def test_group_members_skip_inactive_and_missing_types_yield_nothing(export_dir: Path) -> None:
    source = NdjsonFhirSource(export_dir)
    assert source.group_members("g") == ["b"]
    assert list(source.imaging_studies("a")) == []
    assert list(source.active_encounter_patients(T0)) == []


def test_an_open_end_sentinel_on_the_server_stops_neither_the_cohort_nor_the_patient(
    tmp_path: Path,
) -> None:
    def encounter(eid: str, patient: str, end: str | None) -> dict[str, Any]:
        period = {"start": (T0 - timedelta(days=2)).isoformat(), **({"end": end} if end else {})}
        return {
            "resourceType": "Encounter",
            "id": eid,
            "status": "in-progress",
            "class": {"code": "IMP"},
            "subject": {"reference": f"Patient/{patient}"},
            "period": period,
        }

    _write(tmp_path / "Patient.ndjson", [{"resourceType": "Patient", "id": p} for p in "abc"])
    _write(
        tmp_path / "Encounter.ndjson",
        [encounter("e1", "a", "9999-12-31"), encounter("e2", "b", None),
         encounter("e3", "c", "9999-12-31T23:59:59Z")],
    )  # fmt: skip
    _write(
        tmp_path / "Observation.ndjson",
        [_obs("o1", "a", T0 - timedelta(hours=1)),
         {**_obs("o2", "a", T0), "effectiveDateTime": "9999-12-31T23:59:59Z"}],
    )  # fmt: skip
    source = NdjsonFhirSource(tmp_path)
    assert sorted(p for p, _ in source.active_encounter_patients(T0)) == ["a", "b", "c"]
    seen = [o["id"] for o in source.observations("a", since=T0 - timedelta(hours=48), until=T0)]
    assert seen == ["o1"]  # the year-9999 value is after the as-of time: not in the window


def test_files_are_read_by_content_under_any_name_and_gzipped(tmp_path: Path) -> None:
    import gzip

    def gz(name: str, lines: list[Any]) -> None:
        with gzip.open(tmp_path / name, "wt") as handle:
            handle.writelines(json.dumps(line) + "\n" for line in lines)

    gz("MimicPatient.ndjson.gz", [{"resourceType": "Patient", "id": p} for p in "ab"])
    gz("MimicObservationVitalSignsED.ndjson.gz", [_obs("o1", "a", T0), _obs("o2", "b", T0)])
    _write(tmp_path / "site-2024-03-lab.ndjson", [_obs("o3", "a", T0 + timedelta(hours=1))])
    _write(tmp_path / "Observation.ndjson", [_obs("o4", "a", T0 + timedelta(hours=2))])
    (tmp_path / "notes.ndjson").write_text("not a resource\n")
    (tmp_path / "empty.ndjson").write_text("")
    (tmp_path / "README.txt").write_text("ignored: not NDJSON")

    source = NdjsonFhirSource(tmp_path)
    assert [p.name for p in source.catalog.by_type["Observation"]] == [
        "Observation.ndjson",  # Bulk Data's own name first, then by name
        "MimicObservationVitalSignsED.ndjson.gz",
        "site-2024-03-lab.ndjson",
    ]
    assert source.patient("b")["id"] == "b"
    window = {"since": T0 - timedelta(hours=1), "until": T0 + timedelta(hours=3)}
    assert sorted(o["id"] for o in source.observations("a", **window)) == ["o1", "o3", "o4"]
    issues = source.take_issues()
    assert [(i.code, i.detail) for i in issues] == [
        ("unreadable-file", "notes.ndjson: first line is not JSON")
    ]
