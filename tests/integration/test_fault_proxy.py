"""Each fault the proxy injects reaches a client as promised, against the real FHIR server."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable

import pytest
import requests

from tests.servers.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

ProxyFactory = Callable[[str], FaultProxy]
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def proxy(fhir_base_url: str, fault_proxy: ProxyFactory) -> FaultProxy:
    return fault_proxy(fhir_base_url)


def create_patient(base: str, patient_id: str) -> None:
    body = {"resourceType": "Patient", "id": patient_id}
    response = requests.put(f"{base}/Patient/{patient_id}", json=body, headers=FHIR_JSON)
    assert response.status_code in (200, 201)


def test_without_faults_requests_pass_through_and_are_logged(proxy: FaultProxy) -> None:
    create_patient(proxy.base_url, "p1")
    response = requests.get(f"{proxy.base_url}/Patient/p1")
    assert response.status_code == 200
    assert response.json()["id"] == "p1"
    assert response.headers["ETag"] == 'W/"1"'
    assert [(r.method, r.path, r.fault) for r in proxy.requests] == [
        ("PUT", "/fhir/Patient/p1", None),
        ("GET", "/fhir/Patient/p1", None),
    ]


def test_429_carries_retry_after_for_the_next_n_requests_only(proxy: FaultProxy) -> None:
    create_patient(proxy.base_url, "p1")
    proxy.inject("429", times=2, retry_after=3)
    statuses = []
    for _ in range(3):
        response = requests.get(f"{proxy.base_url}/Patient/p1")
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "3"
            assert response.json()["resourceType"] == "OperationOutcome"
    assert statuses == [429, 429, 200]
    assert proxy.count(path=r"/Patient/p1$", method="GET") == 3
    assert proxy.pending_faults() == 0


@pytest.mark.parametrize(("kind", "status"), [("503", 503), ("500", 500)])
def test_server_error_faults_answer_their_status(proxy: FaultProxy, kind: str, status: int) -> None:
    create_patient(proxy.base_url, "p1")
    proxy.inject(kind)  # type: ignore[arg-type]
    assert requests.get(f"{proxy.base_url}/Patient/p1").status_code == status
    assert requests.get(f"{proxy.base_url}/Patient/p1").status_code == 200


def test_status_fault_answers_any_code(proxy: FaultProxy) -> None:
    proxy.inject("status", status=401)
    assert requests.get(f"{proxy.base_url}/metadata").status_code == 401


def test_match_and_method_limit_which_requests_fail(proxy: FaultProxy) -> None:
    create_patient(proxy.base_url, "p1")
    proxy.inject("503", times=5, match=r"/Observation", method="GET")
    assert requests.get(f"{proxy.base_url}/Patient/p1").status_code == 200
    assert requests.get(f"{proxy.base_url}/Observation").status_code == 503
    assert proxy.pending_faults() == 4
    assert [r.fault for r in proxy.requests[-2:]] == [None, "503"]


def test_skip_lets_earlier_matching_requests_through(proxy: FaultProxy) -> None:
    proxy.inject("500", skip=2, match=r"/metadata")
    codes = [requests.get(f"{proxy.base_url}/metadata").status_code for _ in range(4)]
    assert codes == [200, 200, 500, 200]


def test_reset_drops_the_connection_without_a_response(proxy: FaultProxy) -> None:
    proxy.inject("reset")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.base_url}/metadata")
    assert requests.get(f"{proxy.base_url}/metadata").status_code == 200


def test_close_ends_the_connection_without_a_response(proxy: FaultProxy) -> None:
    proxy.inject("close")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.base_url}/metadata")
    assert proxy.requests[0].fault == "close"


def test_delay_trips_a_client_timeout_then_forwards(proxy: FaultProxy) -> None:
    proxy.inject("delay", delay_s=1.0)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        requests.get(f"{proxy.base_url}/metadata", timeout=0.3)
    assert time.monotonic() - started < 1.0
    slow_but_ok = time.monotonic()
    proxy.inject("delay", delay_s=0.4)
    assert requests.get(f"{proxy.base_url}/metadata", timeout=5).status_code == 200
    assert time.monotonic() - slow_but_ok >= 0.4


def test_malformed_body_is_truncated_json_with_status_200(proxy: FaultProxy) -> None:
    create_patient(proxy.base_url, "p1")
    proxy.inject("malformed", match=r"/Patient/p1$", method="GET")
    response = requests.get(f"{proxy.base_url}/Patient/p1")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_truncate_breaks_the_body_mid_stream(proxy: FaultProxy) -> None:
    proxy.inject("truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(f"{proxy.base_url}/metadata")


def test_paging_links_point_back_at_the_proxy(proxy: FaultProxy) -> None:
    for i in range(3):
        create_patient(proxy.base_url, f"p{i}")
    bundle = requests.get(f"{proxy.base_url}/Patient?_count=1").json()
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    assert next_url.startswith(proxy.base_url)
    proxy.inject("503", match=r"_getpages=")
    assert requests.get(next_url).status_code == 503
    assert requests.get(next_url).status_code == 200


def test_binary_bodies_stream_through_unchanged(proxy: FaultProxy) -> None:
    # A Binary resource carries base64 data; 3 MB exercises multi-chunk streaming both ways.
    payload = os.urandom(3 * 1024 * 1024)
    binary = {"resourceType": "Binary", "id": "b1", "contentType": "application/octet-stream"}
    binary["data"] = base64.b64encode(payload).decode()
    put = requests.put(f"{proxy.base_url}/Binary/b1", json=binary, headers=FHIR_JSON)
    assert put.status_code == 201
    read = requests.get(f"{proxy.base_url}/Binary/b1", headers={"Accept": "application/fhir+json"})
    assert base64.b64decode(read.json()["data"]) == payload


def test_clear_drops_pending_faults_and_the_log(proxy: FaultProxy) -> None:
    proxy.inject("500", times=3)
    requests.get(f"{proxy.base_url}/metadata")
    proxy.clear()
    assert proxy.requests == []
    assert requests.get(f"{proxy.base_url}/metadata").status_code == 200


def test_unknown_fault_kind_is_refused(proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        proxy.inject("teapot")  # type: ignore[arg-type]
