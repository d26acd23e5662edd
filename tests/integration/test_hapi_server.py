"""HAPI FHIR, the reference FHIR server of the tests, behaves as our client expects it to.

These pin facts about HAPI FHIR 8.8.0 (``dipro_fhir/sandbox/servers/hapi``, the same HAPI as
the compose file's image) that the client code relies on: an unchanged re-PUT keeps its
version, a stale If-Match is 409, a transaction referring to a missing resource is 400 and
writes nothing, searches are served from a 60 s cache unless ``Cache-Control: no-cache``, next
links follow the Host header, page sizes are capped, and Bulk Data export works end to end.
They run plain ``requests`` against the real server, so a change of HAPI version that breaks an
assumption fails here first.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests

from tests.servers.hapi_server import HapiServer

pytestmark = pytest.mark.integration

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
NO_CACHE = {**FHIR_JSON, "Cache-Control": "no-cache"}


def patient(pid: str, family: str = "Test") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "name": [{"family": family}]}


def risk_assessment(rid: str, probability: float) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": rid,
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "prediction": [{"probabilityDecimal": probability}],
    }


def put(base: str, resource: dict[str, Any], **headers: str) -> requests.Response:
    url = f"{base}/{resource['resourceType']}/{resource['id']}"
    return requests.put(url, json=resource, headers={**FHIR_JSON, **headers}, timeout=30)


def transaction(base: str, entries: list[dict[str, Any]]) -> requests.Response:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return requests.post(base, json=bundle, headers=FHIR_JSON, timeout=60)


def create_patients(base: str, family: str, count: int) -> None:
    entries = [
        {
            "resource": {"resourceType": "Patient", "name": [{"family": family}]},
            "request": {"method": "POST", "url": "Patient"},
        }
        for _ in range(count)
    ]
    assert transaction(base, entries).status_code == 200


def search(base: str, resource_type: str, headers: dict[str, str], **params: Any) -> Any:
    response = requests.get(f"{base}/{resource_type}", params=params, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def diagnostics(response: requests.Response) -> str:
    return " ".join(issue.get("diagnostics", "") for issue in response.json()["issue"])


def test_identical_reput_keeps_the_version(hapi_base_url: str) -> None:
    assert put(hapi_base_url, patient("p1")).status_code == 201
    first = put(hapi_base_url, risk_assessment("ra-abc", 0.5))
    again = put(hapi_base_url, risk_assessment("ra-abc", 0.5))
    changed = put(hapi_base_url, risk_assessment("ra-abc", 0.7))

    assert (first.status_code, first.headers["ETag"]) == (201, 'W/"1"')
    assert (again.status_code, again.headers["ETag"]) == (200, 'W/"1"')
    assert again.json()["meta"]["versionId"] == "1"
    assert (changed.status_code, changed.headers["ETag"]) == (200, 'W/"2"')


def test_stale_if_match_is_409(hapi_base_url: str) -> None:
    assert put(hapi_base_url, patient("p1")).status_code == 201
    assert put(hapi_base_url, risk_assessment("ra-abc", 0.5)).status_code == 201
    assert put(hapi_base_url, risk_assessment("ra-abc", 0.7)).status_code == 200

    stale = put(hapi_base_url, risk_assessment("ra-abc", 0.9), **{"If-Match": 'W/"1"'})

    assert stale.status_code == 409
    assert "HAPI-0989" in diagnostics(stale)
    current = requests.get(f"{hapi_base_url}/RiskAssessment/ra-abc", headers=FHIR_JSON, timeout=30)
    assert current.json()["prediction"][0]["probabilityDecimal"] == 0.7


def test_purely_numeric_client_id_is_refused(hapi_base_url: str) -> None:
    refused = put(hapi_base_url, patient("123"))

    assert refused.status_code == 400
    assert "HAPI-0960" in diagnostics(refused)


@pytest.mark.parametrize(
    "provenance",
    [
        {"target": [{"reference": "Observation/does-not-exist"}]},
        {
            "target": [{"reference": "Patient/p1"}],
            "entity": [{"role": "source", "what": {"reference": "Observation/does-not-exist"}}],
        },
    ],
    ids=["target", "entity.what"],
)
def test_transaction_referring_to_a_missing_resource_is_400_and_writes_nothing(
    hapi_base_url: str, provenance: dict[str, Any]
) -> None:
    assert put(hapi_base_url, patient("p1")).status_code == 201
    entries = [
        {
            "resource": risk_assessment("ra-tx", 0.5),
            "request": {"method": "PUT", "url": "RiskAssessment/ra-tx"},
        },
        {
            "resource": {
                "resourceType": "Provenance",
                "recorded": "2026-01-01T00:00:00Z",
                "agent": [{"who": {"display": "dipro"}}],
                **provenance,
            },
            "request": {"method": "POST", "url": "Provenance"},
        },
    ]

    refused = transaction(hapi_base_url, entries)

    assert refused.status_code == 400
    assert "HAPI-1094" in diagnostics(refused)
    assert "Observation/does-not-exist" in diagnostics(refused)
    for resource_type in ("RiskAssessment", "Provenance"):
        assert search(hapi_base_url, resource_type, NO_CACHE, _summary="count")["total"] == 0


def test_searches_are_cached_for_60_s_unless_no_cache(hapi_base_url: str) -> None:
    assert search(hapi_base_url, "Patient", FHIR_JSON, family="Cached")["total"] == 0
    create_patients(hapi_base_url, "Cached", 1)

    stale = search(hapi_base_url, "Patient", FHIR_JSON, family="Cached")
    fresh = search(hapi_base_url, "Patient", NO_CACHE, family="Cached")

    assert stale["total"] == 0
    assert fresh["total"] == 1


def test_reset_forgets_cached_searches(hapi_server: HapiServer, hapi_base_url: str) -> None:
    create_patients(hapi_base_url, "Reset", 2)
    assert search(hapi_base_url, "Patient", FHIR_JSON, family="Reset")["total"] == 2

    hapi_server.reset()

    assert search(hapi_base_url, "Patient", FHIR_JSON, family="Reset")["total"] == 0
    # The reset's own emptiness check left no cached count behind.
    create_patients(hapi_base_url, "Reset", 1)
    assert search(hapi_base_url, "Patient", FHIR_JSON, _summary="count")["total"] == 1
    # A client-assigned id used before the reset is new again.
    assert put(hapi_base_url, patient("p1")).headers["ETag"] == 'W/"1"'


def test_next_links_are_built_from_the_host_header(hapi_base_url: str) -> None:
    create_patients(hapi_base_url, "Paged", 25)

    page = search(
        hapi_base_url, "Patient", {**FHIR_JSON, "Host": "example.org:1234"}, family="Paged"
    )

    links = {link["relation"]: link["url"] for link in page["link"]}
    assert len(page["entry"]) == 20  # default_page_size
    assert links["self"].startswith("http://example.org:1234/fhir/Patient?")
    assert links["next"].startswith("http://example.org:1234/fhir?_getpages=")
    second = requests.get(
        links["next"].replace("http://example.org:1234/fhir", hapi_base_url),
        headers=FHIR_JSON,
        timeout=30,
    ).json()
    assert len(second["entry"]) == 5
    assert "next" not in {link["relation"] for link in second["link"]}


def test_page_size_is_capped_at_max_page_size(hapi_base_url: str) -> None:
    create_patients(hapi_base_url, "Many", 205)

    page = search(hapi_base_url, "Patient", FHIR_JSON, family="Many", _count=500)

    assert len(page["entry"]) == 200
    assert "next" in {link["relation"] for link in page["link"]}


def test_patient_everything(hapi_base_url: str) -> None:
    assert put(hapi_base_url, patient("p1")).status_code == 201
    assert put(hapi_base_url, risk_assessment("ra-abc", 0.5)).status_code == 201

    bundle = requests.get(f"{hapi_base_url}/Patient/p1/$everything", headers=FHIR_JSON, timeout=30)

    assert bundle.status_code == 200
    found = {
        f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.json()["entry"]
    }
    assert found == {"Patient/p1", "RiskAssessment/ra-abc"}


@pytest.mark.slow
def test_bulk_export_round_trip(hapi_base_url: str) -> None:
    assert put(hapi_base_url, patient("p1")).status_code == 201
    assert put(hapi_base_url, risk_assessment("ra-abc", 0.5)).status_code == 201

    kickoff = requests.get(
        f"{hapi_base_url}/$export",
        headers={"Prefer": "respond-async", "Accept": "application/fhir+json"},
        timeout=30,
    )
    assert kickoff.status_code == 202
    status_url = kickoff.headers["Content-Location"]
    assert status_url.startswith(f"{hapi_base_url}/$export-poll-status?_jobId=")

    deadline = time.monotonic() + 120
    while (poll := requests.get(status_url, timeout=30)).status_code == 202:
        assert "Retry-After" in poll.headers
        assert time.monotonic() < deadline, "export did not finish in 120 s"
        time.sleep(0.5)
    assert poll.status_code == 200
    manifest = poll.json()
    assert manifest["request"] == f"{hapi_base_url}/$export"
    assert manifest["error"] == []
    outputs = {item["type"]: item["url"] for item in manifest["output"]}
    assert set(outputs) == {"Patient", "RiskAssessment"}

    download = requests.get(
        outputs["RiskAssessment"], headers={"Accept": "application/fhir+ndjson"}, timeout=30
    )
    assert download.status_code == 200
    assert download.headers["Content-Type"].startswith("application/fhir+ndjson")
    lines = [json.loads(line) for line in download.text.splitlines() if line]
    assert [(r["resourceType"], r["id"]) for r in lines] == [("RiskAssessment", "ra-abc")]
