"""HttpFhirSource and NdjsonFhirSource answer the same questions the same way.

The same resources are loaded into the real FHIR server and exported (as the server stored
them, with its ``meta.lastUpdated``) into Bulk Data NDJSON files; every test then runs over
both implementations.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dipro_fhir.core.errors import ResourceNotFound
from dipro_fhir.fhir import FhirClient, FhirSource, HttpFhirSource, NdjsonFhirSource

from .conftest import T0, encounter, hourly_observations, imaging_study, observation, patient
from .conftest import transaction as make_transaction

pytestmark = pytest.mark.integration
TYPES = ("Patient", "Encounter", "Observation", "ImagingStudy", "Group")


def _cohort() -> list[dict[str, Any]]:
    day = timedelta(days=1)
    return [
        patient("a"),
        patient("b"),
        patient("c"),
        encounter("ea", "a", "in-progress", "IMP", T0 - 2 * day),
        encounter("eb", "b", "finished", "ICU", T0 - 3 * day, T0 + day),  # backfill case
        encounter("eb-old", "b", "finished", "IMP", T0 - 30 * day, T0 - 20 * day),
        encounter("ec", "c", "in-progress", "AMB", T0 - day),
        *hourly_observations("a", 30, T0 - timedelta(hours=10)),
        observation("b-spo2", "b", T0 + timedelta(hours=1), code="59408-5"),
        imaging_study("ia", "a"),
        {
            "resourceType": "Group",
            "id": "g1",
            "type": "person",
            "actual": True,
            "member": [
                {"entity": {"reference": "Patient/c"}},
                {"entity": {"reference": "Patient/a"}},
                {"entity": {"reference": "Patient/b"}, "inactive": True},
            ],
        },
    ]


@pytest.fixture(params=["http", "ndjson"])
def source(
    request: pytest.FixtureRequest,
    fhir_base_url: str,
    make_client: Callable[..., FhirClient],
    tmp_path: Path,
) -> FhirSource:
    client = make_client(fhir_base_url, page_size=7)
    client.transaction(make_transaction(_cohort()), idempotent=True)
    if request.param == "http":
        return HttpFhirSource(client)
    for resource_type in TYPES:  # a Bulk-Data-like export of what the server stored
        lines = [json.dumps(r) + "\n" for r in client.search(resource_type, {})]
        (tmp_path / f"{resource_type}.ndjson").write_text("".join(lines))
    return NdjsonFhirSource(tmp_path)


def test_patient_and_missing_patient(source: FhirSource) -> None:
    assert source.patient("a")["id"] == "a"
    with pytest.raises(ResourceNotFound):
        source.patient("nobody")


def test_observations_in_a_half_open_window(source: FhirSource) -> None:
    found = source.observations("a", since=T0, until=T0 + timedelta(hours=5))
    assert sorted(o["id"] for o in found) == [f"a-o{i}" for i in range(10, 15)]


def test_observations_filtered_by_code(source: FhirSource) -> None:
    window = {"since": T0 - timedelta(days=1), "until": T0 + timedelta(days=1)}
    assert [
        o["id"] for o in source.observations("b", codes=["http://loinc.org|59408-5"], **window)
    ] == ["b-spo2"]
    assert list(source.observations("b", codes=["8867-4"], **window)) == []
    assert len(list(source.observations("a", codes=None, **window))) == 30


def test_encounters_and_imaging_studies_of_one_patient(source: FhirSource) -> None:
    assert sorted(e["id"] for e in source.encounters("b")) == ["eb", "eb-old"]
    assert [s["id"] for s in source.imaging_studies("a")] == ["ia"]
    assert list(source.imaging_studies("b")) == []


def test_active_encounters_follow_the_documented_rule(source: FhirSource) -> None:
    assert list(source.active_encounter_patients(T0)) == [("a", "ea"), ("b", "eb")]
    assert list(source.active_encounter_patients(T0 + timedelta(days=2))) == [("a", "ea")]


def test_patients_with_data_since_uses_last_updated(source: FhirSource) -> None:
    now = datetime.now(UTC)
    assert list(
        source.patients_with_data_since(now - timedelta(hours=1), now + timedelta(minutes=5))
    ) == ["a", "b"]
    assert (
        list(source.patients_with_data_since(now + timedelta(minutes=5), now + timedelta(hours=1)))
        == []
    )


def test_group_members_are_active_patients_in_order(source: FhirSource) -> None:
    assert source.group_members("g1") == ["c", "a"]
    assert source.take_issues() == []
