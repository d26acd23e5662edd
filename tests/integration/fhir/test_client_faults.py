"""Retries and error mapping with faults injected by a proxy in front of the real server."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from dipro_fhir.core.errors import AuthError, SourceUnavailable
from dipro_fhir.fhir import FhirClient

from .conftest import hourly_observations, patient, transaction

pytestmark = pytest.mark.integration
MakeClient = Callable[..., FhirClient]


@pytest.fixture
def proxy(fhir_base_url: str, fault_proxy: Callable[[str], Any], make_client: MakeClient) -> Any:
    make_client(fhir_base_url).transaction(
        transaction([patient("p1"), *hourly_observations("p1", 3)]), idempotent=True
    )
    return fault_proxy(fhir_base_url)


def _reads(proxy: Any) -> list[str | None]:
    return [r.fault for r in proxy.requests if r.path.endswith("/Patient/p1")]


def test_429_with_retry_after_is_waited_out_then_succeeds(
    proxy: Any, make_client: MakeClient
) -> None:
    proxy.inject("429", times=1, match="/Patient/p1", retry_after=1)
    started = time.monotonic()
    assert make_client(proxy.base_url).read("Patient", "p1")["id"] == "p1"
    assert time.monotonic() - started >= 0.9  # honoured Retry-After: 1, not the 10 ms backoff
    assert _reads(proxy) == ["429", None]


def test_two_503s_then_success(proxy: Any, make_client: MakeClient) -> None:
    proxy.inject("503", times=2, match="/Patient/p1")
    assert make_client(proxy.base_url).read("Patient", "p1")["id"] == "p1"
    assert _reads(proxy) == ["503", "503", None]


def test_connection_reset_then_success(proxy: Any, make_client: MakeClient) -> None:
    proxy.inject("reset", times=1, match="/Patient/p1")
    assert make_client(proxy.base_url).read("Patient", "p1")["id"] == "p1"
    assert _reads(proxy) == ["reset", None]


def test_timeout_then_success(proxy: Any, make_client: MakeClient) -> None:
    proxy.inject("delay", times=1, match="/Patient/p1", delay_s=2)
    client = make_client(proxy.base_url, timeout_s=0.3)
    assert client.read("Patient", "p1")["id"] == "p1"
    assert _reads(proxy) == ["delay", None]


def test_persistent_503_gives_source_unavailable_after_max_attempts(
    proxy: Any, make_client: MakeClient
) -> None:
    proxy.inject("503", times=100, match="/Patient/p1")
    with pytest.raises(SourceUnavailable, match="after 4 attempts") as info:
        make_client(proxy.base_url).read("Patient", "p1")
    assert info.value.status == 503
    assert info.value.outcome is not None
    assert _reads(proxy) == ["503"] * 4


def test_401_is_an_auth_error_without_retry(proxy: Any, make_client: MakeClient) -> None:
    proxy.inject("status", times=5, match="/Patient/p1", status=401)
    with pytest.raises(AuthError):
        make_client(proxy.base_url).read("Patient", "p1")
    assert _reads(proxy) == ["status"]


def test_other_4xx_is_not_retried(proxy: Any, make_client: MakeClient) -> None:
    proxy.inject("status", times=5, match="/Patient/p1", status=400)
    with pytest.raises(Exception, match="HTTP 400"):
        make_client(proxy.base_url).read("Patient", "p1")
    assert _reads(proxy) == ["status"]


def test_create_is_not_retried_on_503(proxy: Any, make_client: MakeClient) -> None:
    proxy.inject("503", times=1, method="POST")
    with pytest.raises(SourceUnavailable):
        make_client(proxy.base_url).create({"resourceType": "Patient"})
    assert proxy.count(method="POST") == 1


def test_idempotent_transaction_is_retried_but_plain_one_is_not(
    proxy: Any, make_client: MakeClient
) -> None:
    client = make_client(proxy.base_url)
    proxy.inject("503", times=1, method="POST")
    with pytest.raises(SourceUnavailable):
        client.transaction(transaction([patient("p2")]))
    proxy.inject("503", times=1, method="POST")
    response = client.transaction(transaction([patient("p2")]), idempotent=True)
    assert response["type"] == "transaction-response"
    assert proxy.count(method="POST") == 3


def test_malformed_json_body_is_retried_then_a_clear_error(
    proxy: Any, make_client: MakeClient
) -> None:
    proxy.inject("malformed", times=1, match="/Patient/p1")
    assert make_client(proxy.base_url).read("Patient", "p1")["id"] == "p1"
    assert _reads(proxy) == ["malformed", None]
    proxy.inject("malformed", times=100, match="/Patient/p1")
    with pytest.raises(SourceUnavailable, match="not a JSON object"):
        make_client(proxy.base_url).read("Patient", "p1")


def test_body_cut_short_of_content_length_is_retried(proxy: Any, make_client: MakeClient) -> None:
    proxy.inject("truncate", times=1, match="/Patient/p1")
    assert make_client(proxy.base_url).read("Patient", "p1")["id"] == "p1"
    assert _reads(proxy) == ["truncate", None]


def test_a_failing_page_is_retried_mid_search(proxy: Any, make_client: MakeClient) -> None:
    proxy.inject("503", times=1, method="GET", skip=1)  # the 2nd page
    found = list(
        make_client(proxy.base_url, page_size=1).search("Observation", {"subject": "Patient/p1"})
    )
    assert len(found) == 3
    assert [r.fault for r in proxy.requests] == [None, "503", None, None]


def test_logs_carry_no_query_or_patient_id(
    proxy: Any, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    proxy.inject("503", times=1, match="/Observation")
    with caplog.at_level(logging.DEBUG, logger="dipro_fhir"):
        list(make_client(proxy.base_url).search("Observation", {"subject": "Patient/p1"}))
        with pytest.raises(Exception, match="404"):
            make_client(proxy.base_url).read("Patient", "secret-id-42")
    text = caplog.text
    assert "fhir GET Observation status=503" in text
    assert "p1" not in text
    assert "secret-id-42" not in text
    assert "?" not in text
