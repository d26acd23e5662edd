"""The second FHIR test server (Medplum's router behind our harness) behaves like a real R4
server where our client depends on it.

HAPI FHIR is the reference server of the tests (``tests/integration/test_hapi_server.py``
pins its behaviour); this harness is kept as a second implementation for portability
subsets. Where the two differ (an identical re-PUT, a stale If-Match) the test says so:
our client must work with both. These run plain ``requests`` against the real harness
process, so a regression in it shows up here rather than as a puzzling client failure.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

pytestmark = pytest.mark.integration

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
LOINC_HR = {"system": "http://loinc.org", "code": "8867-4"}
LOINC_RR = {"system": "http://loinc.org", "code": "9279-1"}


def observation(patient: str, coding: dict[str, str], when: str) -> dict[str, Any]:
    """A minimal valid R4 Observation (status and code are 1..1)."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [coding]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": 80, "unit": "/min"},
    }


def post(base: str, resource: dict[str, Any]) -> requests.Response:
    return requests.post(f"{base}/{resource['resourceType']}", json=resource, headers=FHIR_JSON)


def put(base: str, resource: dict[str, Any], **headers: str) -> requests.Response:
    url = f"{base}/{resource['resourceType']}/{resource['id']}"
    return requests.put(url, json=resource, headers={**FHIR_JSON, **headers})


def search_ids(base: str, query: str) -> set[str]:
    bundle = requests.get(f"{base}/{query}", headers=FHIR_JSON).json()
    return {entry["resource"]["id"] for entry in bundle.get("entry", [])}


def test_metadata_is_an_r4_capability_statement(medplum_base_url: str) -> None:
    response = requests.get(f"{medplum_base_url}/metadata", headers=FHIR_JSON)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {"Observation", "ImagingStudy", "RiskAssessment", "Patient"} <= types


def test_create_read_update_delete_round_trip(medplum_base_url: str) -> None:
    created = post(medplum_base_url, {"resourceType": "Patient", "birthDate": "1970-01-01"})
    assert created.status_code == 201
    patient = created.json()
    assert created.headers["ETag"] == 'W/"1"'
    assert created.headers["Location"] == f"{medplum_base_url}/Patient/{patient['id']}/_history/1"

    read = requests.get(f"{medplum_base_url}/Patient/{patient['id']}", headers=FHIR_JSON)
    assert read.status_code == 200
    assert read.json()["birthDate"] == "1970-01-01"

    patient["birthDate"] = "1971-02-03"
    updated = put(medplum_base_url, patient)
    assert updated.status_code == 200
    assert updated.headers["ETag"] == 'W/"2"'
    assert updated.json()["meta"]["versionId"] == "2"

    assert requests.delete(f"{medplum_base_url}/Patient/{patient['id']}").status_code == 200
    # R4 http.html#read: a deleted resource answers 410 Gone, one never created 404.
    assert requests.get(f"{medplum_base_url}/Patient/{patient['id']}").status_code == 410
    assert requests.get(f"{medplum_base_url}/Patient/never-was").status_code == 404


def test_identical_re_put_bumps_the_version_unlike_hapi(medplum_base_url: str) -> None:
    # HAPI suppresses an identical update (suppressUpdatesWithNoChange) and stays at 1.
    resource = {"resourceType": "Patient", "id": "dipro-test-1", "gender": "female"}
    first = put(medplum_base_url, resource)
    assert first.status_code == 201
    assert first.json()["id"] == "dipro-test-1"
    second = put(medplum_base_url, resource)
    assert second.status_code == 200
    assert second.json()["meta"]["versionId"] == "2"


def test_if_match_with_stale_version_is_412_where_hapi_says_409(medplum_base_url: str) -> None:
    resource = {"resourceType": "Patient", "id": "p-ifmatch"}
    put(medplum_base_url, resource)
    put(medplum_base_url, resource)  # now at version 2 (HAPI would need a changed body)
    stale = put(medplum_base_url, resource, **{"If-Match": 'W/"1"'})
    assert stale.status_code == 412
    fresh = put(medplum_base_url, resource, **{"If-Match": 'W/"2"'})
    assert fresh.status_code == 200


def test_search_filters_by_subject_code_and_date(medplum_base_url: str) -> None:
    ids = {}
    for key, patient, coding, when in [
        ("a_hr_jan", "a", LOINC_HR, "2024-01-10T08:00:00Z"),
        ("a_hr_mar", "a", LOINC_HR, "2024-03-10T08:00:00Z"),
        ("a_rr_jan", "a", LOINC_RR, "2024-01-11T08:00:00Z"),
        ("b_hr_jan", "b", LOINC_HR, "2024-01-12T08:00:00Z"),
    ]:
        ids[key] = post(medplum_base_url, observation(patient, coding, when)).json()["id"]

    assert search_ids(medplum_base_url, "Observation?subject=Patient/a") == {
        ids["a_hr_jan"],
        ids["a_hr_mar"],
        ids["a_rr_jan"],
    }
    assert search_ids(medplum_base_url, "Observation?patient=Patient/b") == {ids["b_hr_jan"]}
    assert search_ids(
        medplum_base_url, "Observation?subject=Patient/a&code=http://loinc.org|8867-4"
    ) == {
        ids["a_hr_jan"],
        ids["a_hr_mar"],
    }
    query = "Observation?subject=Patient/a&date=ge2024-01-01&date=lt2024-02-01"
    assert search_ids(medplum_base_url, query) == {ids["a_hr_jan"], ids["a_rr_jan"]}


def test_search_entries_carry_full_url_and_match_mode(medplum_base_url: str) -> None:
    created = post(medplum_base_url, observation("a", LOINC_HR, "2024-01-10T08:00:00Z")).json()
    bundle = requests.get(f"{medplum_base_url}/Observation", headers=FHIR_JSON).json()
    assert bundle["type"] == "searchset"
    (entry,) = bundle["entry"]
    assert entry["fullUrl"] == f"{medplum_base_url}/Observation/{created['id']}"
    assert entry["search"]["mode"] == "match"


def test_paging_follows_opaque_next_links_across_pages(medplum_base_url: str) -> None:
    created = {
        post(medplum_base_url, observation("p", LOINC_HR, f"2024-01-{day:02d}T00:00:00Z")).json()[
            "id"
        ]
        for day in range(1, 24)
    }
    url: str | None = f"{medplum_base_url}/Observation?subject=Patient/p&_count=5"
    seen: list[str] = []
    pages = 0
    while url:
        bundle = requests.get(url, headers=FHIR_JSON).json()
        pages += 1
        assert len(bundle.get("entry", [])) <= 5
        seen += [entry["resource"]["id"] for entry in bundle.get("entry", [])]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        url = links.get("next")
        if url:
            # HAPI-style opaque page link: it does not repeat the search parameters.
            assert "subject=" not in url
            assert "_getpages=" in url
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == created


def test_default_page_size_is_20_and_count_is_capped_at_200(medplum_base_url: str) -> None:
    entries = [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
        for _ in range(205)
    ]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": entries}
    assert requests.post(medplum_base_url, json=batch, headers=FHIR_JSON).status_code == 200
    default = requests.get(f"{medplum_base_url}/Patient", headers=FHIR_JSON).json()
    assert len(default["entry"]) == 20
    capped = requests.get(f"{medplum_base_url}/Patient?_count=1000", headers=FHIR_JSON).json()
    assert len(capped["entry"]) == 200
    assert any(link["relation"] == "next" for link in capped["link"])


def test_summary_count_returns_total_without_entries(medplum_base_url: str) -> None:
    for day in (1, 2, 3):
        post(medplum_base_url, observation("c", LOINC_HR, f"2024-02-0{day}T00:00:00Z"))
    bundle = requests.get(
        f"{medplum_base_url}/Observation?subject=Patient/c&_summary=count", headers=FHIR_JSON
    ).json()
    assert bundle["total"] == 3
    assert "entry" not in bundle


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def test_transaction_resolves_urn_references_and_returns_locations(medplum_base_url: str) -> None:
    patient_urn = "urn:uuid:6f1c7c1e-4f59-4c1e-9a39-0d9e0c1f2a3b"
    obs = observation("x", LOINC_HR, "2024-01-01T00:00:00Z")
    obs["subject"] = {"reference": patient_urn}
    bundle = transaction(
        {
            "fullUrl": patient_urn,
            "resource": {"resourceType": "Patient"},
            "request": {"method": "POST", "url": "Patient"},
        },
        {"resource": obs, "request": {"method": "POST", "url": "Observation"}},
    )
    response = requests.post(medplum_base_url, json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200
    result = response.json()
    assert result["type"] == "transaction-response"
    patient_location = result["entry"][0]["response"]["location"]
    assert patient_location.startswith("Patient/")
    obs_id = result["entry"][1]["response"]["location"].split("/")[1]
    stored = requests.get(f"{medplum_base_url}/Observation/{obs_id}").json()
    assert stored["subject"]["reference"] == "/".join(patient_location.split("/")[:2])


def test_failing_transaction_entry_leaves_no_partial_writes(medplum_base_url: str) -> None:
    put(medplum_base_url, {"resourceType": "Patient", "id": "keep", "gender": "male"})
    invalid = {"resourceType": "Observation", "code": {"text": "no status"}}  # status is 1..1
    bundle = transaction(
        {
            "resource": {"resourceType": "Patient", "id": "keep", "gender": "female"},
            "request": {"method": "PUT", "url": "Patient/keep"},
        },
        {
            "resource": {"resourceType": "Patient", "id": "new-one"},
            "request": {"method": "PUT", "url": "Patient/new-one"},
        },
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": invalid, "request": {"method": "POST", "url": "Observation"}},
    )
    response = requests.post(medplum_base_url, json=bundle, headers=FHIR_JSON)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    kept = requests.get(f"{medplum_base_url}/Patient/keep").json()
    assert kept["gender"] == "male"
    assert kept["meta"]["versionId"] == "1"
    assert requests.get(f"{medplum_base_url}/Patient/new-one").status_code == 404
    assert search_ids(medplum_base_url, "Patient") == {"keep"}


def test_batch_reports_each_entry_outcome_independently(medplum_base_url: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "id": "ok-1"},
                "request": {"method": "PUT", "url": "Patient/ok-1"},
            },
            {
                "resource": {"resourceType": "Observation", "code": {"text": "no status"}},
                "request": {"method": "POST", "url": "Observation"},
            },
            {"request": {"method": "GET", "url": "Patient/absent"}},
        ],
    }
    response = requests.post(medplum_base_url, json=bundle, headers=FHIR_JSON)
    assert response.status_code == 200
    statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
    assert [s[:3] for s in statuses] == ["201", "400", "404"]
    assert requests.get(f"{medplum_base_url}/Patient/ok-1").status_code == 200


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ({"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
        ({"resourceType": "RiskAssessment", "status": "final"}, "RiskAssessment.subject"),
        ({"resourceType": "Observation", "status": "final", "code": {}, "bogus": 1}, None),
    ],
)
def test_invalid_resource_is_rejected_with_400_operation_outcome(
    medplum_base_url: str, resource: dict[str, Any], expression: str | None
) -> None:
    response = post(medplum_base_url, resource)
    assert response.status_code == 400
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error"
    if expression:
        assert expression in body["issue"][0]["expression"]
    assert search_ids(medplum_base_url, resource["resourceType"]) == set()


def test_resource_type_and_id_must_match_the_url(medplum_base_url: str) -> None:
    wrong_type = requests.post(
        f"{medplum_base_url}/Observation", json={"resourceType": "Patient"}, headers=FHIR_JSON
    )
    assert wrong_type.status_code == 400
    wrong_id = requests.put(
        f"{medplum_base_url}/Patient/a",
        json={"resourceType": "Patient", "id": "b"},
        headers=FHIR_JSON,
    )
    assert wrong_id.status_code == 400
    unknown = requests.post(
        f"{medplum_base_url}/Foo", json={"resourceType": "Foo"}, headers=FHIR_JSON
    )
    assert unknown.status_code == 404


def test_non_json_body_is_refused(medplum_base_url: str) -> None:
    response = requests.post(
        f"{medplum_base_url}/Patient",
        data="<Patient xmlns='http://hl7.org/fhir'/>",
        headers={"Content-Type": "application/fhir+xml"},
    )
    assert response.status_code == 415
    broken = requests.post(
        f"{medplum_base_url}/Patient",
        data="{not json",
        headers={"Content-Type": "application/fhir+json"},
    )
    assert broken.status_code == 400


def test_reset_empties_the_store_and_expires_page_links(
    medplum_server: Any, medplum_base_url: str
) -> None:
    for _ in range(3):
        post(medplum_base_url, {"resourceType": "Patient"})
    first = requests.get(f"{medplum_base_url}/Patient?_count=1").json()
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    medplum_server.reset()
    assert search_ids(medplum_base_url, "Patient") == set()
    assert requests.get(next_url).status_code == 410
