"""FhirClient against the real FHIR server: CRUD, transactions, paging, counts, errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from dipro_fhir.core.errors import (
    PublishConflict,
    RequestRejected,
    ResourceNotFound,
    ServerProtocolError,
)
from dipro_fhir.fhir import FhirClient

from .conftest import T0, hourly_observations, patient, transaction

pytestmark = pytest.mark.integration
MakeClient = Callable[..., FhirClient]


def test_capabilities_is_a_capability_statement(
    any_fhir_base_url: str, make_client: MakeClient
) -> None:
    statement = make_client(any_fhir_base_url).capabilities()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"].startswith("4.")


def test_put_then_read_returns_the_stored_version(
    fhir_base_url: str, make_client: MakeClient
) -> None:
    client = make_client(fhir_base_url)
    stored = client.put(patient("p1"))
    assert stored["id"] == "p1"
    assert client.read("Patient", "p1")["meta"]["versionId"] == stored["meta"]["versionId"]


def test_put_with_stale_if_match_is_a_publish_conflict(
    any_fhir_base_url: str, make_client: MakeClient
) -> None:
    client = make_client(any_fhir_base_url)
    first = client.put(patient("p1"))
    client.put({**patient("p1"), "gender": "male"}, if_match=first["meta"]["versionId"])
    with pytest.raises(PublishConflict) as info:
        client.put({**patient("p1"), "gender": "other"}, if_match=first["meta"]["versionId"])
    assert info.value.status in (409, 412)


def test_create_assigns_a_server_id(fhir_base_url: str, make_client: MakeClient) -> None:
    created = make_client(fhir_base_url).create({"resourceType": "Patient", "gender": "male"})
    assert created["id"]


def test_read_of_missing_resource_is_resource_not_found(
    fhir_base_url: str, make_client: MakeClient
) -> None:
    with pytest.raises(ResourceNotFound) as info:
        make_client(fhir_base_url).read("Patient", "nobody")
    assert info.value.status == 404
    assert info.value.outcome is not None
    assert info.value.outcome["resourceType"] == "OperationOutcome"


def test_invalid_resource_is_rejected_with_the_servers_outcome(
    fhir_base_url: str, make_client: MakeClient
) -> None:
    with pytest.raises(RequestRejected) as info:
        make_client(fhir_base_url).put({"resourceType": "Patient", "id": "p1", "gender": 7})
    assert info.value.status in (400, 422)
    assert info.value.outcome is not None


def test_search_follows_every_next_link_exactly_once(
    any_fhir_base_url: str, fault_proxy: Callable[[str], object], make_client: MakeClient
) -> None:
    make_client(any_fhir_base_url).transaction(
        transaction([patient("p1"), *hourly_observations("p1", 450)]), idempotent=True
    )
    proxy = fault_proxy(any_fhir_base_url)
    client = make_client(proxy.base_url)  # type: ignore[attr-defined]
    found = list(client.search("Observation", {"subject": "Patient/p1", "_count": "50"}))
    assert len(found) == 450
    assert len({o["id"] for o in found}) == 450
    gets = [(r.path, r.query) for r in proxy.requests]  # type: ignore[attr-defined]
    assert len(gets) == 9
    assert len(set(gets)) == 9


def test_search_pages_yields_bundles_and_count_matches(
    any_fhir_base_url: str, make_client: MakeClient
) -> None:
    client = make_client(any_fhir_base_url, page_size=20)
    client.transaction(
        transaction([patient("p1"), *hourly_observations("p1", 45)]), idempotent=True
    )
    pages = list(client.search_pages("Observation", {"subject": "Patient/p1"}))
    assert [len(p.get("entry", [])) for p in pages] == [20, 20, 5]
    assert all(p["type"] == "searchset" for p in pages)
    assert client.count("Observation", {"subject": "Patient/p1"}) == 45


def test_date_filters_are_half_open(any_fhir_base_url: str, make_client: MakeClient) -> None:
    client = make_client(any_fhir_base_url)
    client.transaction(
        transaction([patient("p1"), *hourly_observations("p1", 10)]), idempotent=True
    )
    start, end = T0 + timedelta(hours=2), T0 + timedelta(hours=5)
    params = {"subject": "Patient/p1", "date": [f"ge{start.isoformat()}", f"lt{end.isoformat()}"]}
    assert sorted(o["id"] for o in client.search("Observation", params)) == [
        "p1-o2",
        "p1-o3",
        "p1-o4",
    ]


def test_batch_reports_each_entry(fhir_base_url: str, make_client: MakeClient) -> None:
    client = make_client(fhir_base_url)
    bundle = transaction([patient("p1"), patient("p2")])
    bundle["type"] = "batch"
    response = client.batch(bundle, idempotent=True)
    assert response["type"] == "batch-response"
    assert [e["response"]["status"][:3] for e in response["entry"]] == ["201", "201"]


def test_idempotent_flag_is_refused_for_posts(fhir_base_url: str, make_client: MakeClient) -> None:
    bundle = transaction([patient("p1")])
    bundle["entry"][0]["request"] = {"method": "POST", "url": "Patient"}
    with pytest.raises(ValueError, match="not PUT"):
        make_client(fhir_base_url).transaction(bundle, idempotent=True)


def test_search_right_after_a_write_is_not_served_from_hapis_cache(
    fhir_base_url: str, make_client: MakeClient
) -> None:
    # HAPI reuses a search's results for 60 s unless the request says Cache-Control:
    # no-cache; the client says it on every GET.
    client = make_client(fhir_base_url)
    client.transaction(transaction([patient("p1"), *hourly_observations("p1", 3)]), idempotent=True)
    assert len(list(client.search("Observation", {"subject": "Patient/p1"}))) == 3
    client.transaction(
        transaction(hourly_observations("p1", 5, start=T0 + timedelta(days=1))[3:]),
        idempotent=True,
    )
    assert len(list(client.search("Observation", {"subject": "Patient/p1"}))) == 5


def test_next_links_of_a_server_behind_a_proxy_are_refused_unless_their_base_is_named(
    fhir_base_url: str, fault_proxy: Callable[..., object], make_client: MakeClient
) -> None:
    make_client(fhir_base_url).transaction(
        transaction([patient("p1"), *hourly_observations("p1", 25)]), idempotent=True
    )
    # A gateway that sends the server its own address: next links name the internal base.
    proxy = fault_proxy(fhir_base_url, keep_host=False)
    outside = proxy.base_url  # type: ignore[attr-defined]
    params = {"subject": "Patient/p1", "_count": "10"}
    with pytest.raises(ServerProtocolError, match="another server"):
        list(make_client(outside).search("Observation", params))
    rewriting = make_client(outside, next_link_base=fhir_base_url)
    assert len(list(rewriting.search("Observation", params))) == 25
    pages = [r for r in proxy.requests if r.method == "GET"]  # type: ignore[attr-defined]
    assert len(pages) == 1 + 3  # the refused first page, then three pages through the proxy


def test_a_resource_over_the_size_limit_is_refused_over_rest_as_in_ndjson(
    fhir_base_url: str, make_client: MakeClient
) -> None:
    from dipro_fhir.core.limits import InputLimitExceeded, InputLimits

    big = hourly_observations("p1", 1)[0]
    big["id"], big["note"] = "p1-big", [{"text": "x" * 300_000}]
    make_client(fhir_base_url).transaction(
        transaction([patient("p1"), *hourly_observations("p1", 3), big]), idempotent=True
    )
    limited = make_client(fhir_base_url, limits=InputLimits(max_resource_bytes=256 * 1024))
    too_big = r"Observation resource of 3\d{5} bytes > limit 262144"
    with pytest.raises(InputLimitExceeded, match=too_big):
        list(limited.search("Observation", {"subject": "Patient/p1"}))
    with pytest.raises(InputLimitExceeded, match="Observation resource of"):
        limited.read("Observation", "p1-big")
    # Pages and resources under the limit pass as before.
    assert limited.read("Observation", "p1-o0")["id"] == "p1-o0"
    assert (
        len(list(make_client(fhir_base_url).search("Observation", {"subject": "Patient/p1"}))) == 4
    )
