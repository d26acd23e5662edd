"""Credentials reach the server: Basic, bearer, and the SMART Backend Services flow against
a real token endpoint, checked at an authenticating gateway in front of the FHIR server."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dipro_fhir.core.errors import AuthError
from dipro_fhir.fhir import BasicAuth, BearerTokenAuth, FhirClient, SmartBackendAuth

from .auth_servers import AuthGateway, TokenServer
from .conftest import patient

pytestmark = pytest.mark.integration
MakeClient = Callable[..., FhirClient]


class Secret:
    """Stands in for pydantic's SecretStr (same accessor)."""

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value


@pytest.fixture
def gateway(fhir_base_url: str) -> Iterator[Callable[[Callable[[str | None], bool]], AuthGateway]]:
    started: list[AuthGateway] = []

    def start(accept: Callable[[str | None], bool]) -> AuthGateway:
        started.append(AuthGateway(fhir_base_url, accept))
        return started[-1]

    yield start
    for server in started:
        server.close()


def test_basic_credentials_arrive(gateway: Any, make_client: MakeClient) -> None:
    expected = "Basic " + base64.b64encode(b"dipro:s3cret").decode()
    gw = gateway(lambda header: header == expected)
    client = make_client(gw.base_url, auth=BasicAuth("dipro", Secret("s3cret")))
    client.put(patient("p1"))
    assert client.read("Patient", "p1")["id"] == "p1"
    assert gw.seen == [expected, expected]


def test_wrong_password_fails_once_without_retry(gateway: Any, make_client: MakeClient) -> None:
    gw = gateway(lambda header: False)
    with pytest.raises(AuthError) as info:
        make_client(gw.base_url, auth=BasicAuth("dipro", "wrong")).read("Patient", "p1")
    assert info.value.status == 401
    assert len(gw.seen) == 1


def test_static_bearer_token_arrives(gateway: Any, make_client: MakeClient) -> None:
    gw = gateway(lambda header: header == "Bearer abc.def")
    make_client(gw.base_url, auth=BearerTokenAuth("abc.def")).capabilities()
    assert gw.seen == ["Bearer abc.def"]


def _key_pem(algorithm: str) -> tuple[Any, bytes]:
    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key.public_key(), pem


@pytest.fixture(params=["RS384", "ES384"])
def smart(request: pytest.FixtureRequest) -> Iterator[tuple[TokenServer, SmartBackendAuth]]:
    public, pem = _key_pem(request.param)
    server = TokenServer("dipro-job", public, "key-1", expires_in=300)
    auth = SmartBackendAuth(
        token_url=server.url,
        client_id="dipro-job",
        private_key=pem,
        key_id="key-1",
        algorithm=request.param,
        scope="system/Observation.read",
    )
    yield server, auth
    server.close()


def test_smart_token_is_fetched_once_and_sent_as_bearer(
    smart: tuple[TokenServer, SmartBackendAuth], gateway: Any, make_client: MakeClient
) -> None:
    server, auth = smart
    gw = gateway(lambda header: header is not None and header[7:] in server.issued)
    client = make_client(gw.base_url, auth=auth)
    client.put(patient("p1"))
    client.read("Patient", "p1")
    assert server.issued == ["token-1"]
    assert gw.seen == ["Bearer token-1", "Bearer token-1"]


def test_smart_token_is_refreshed_once_after_a_401(
    smart: tuple[TokenServer, SmartBackendAuth], gateway: Any, make_client: MakeClient
) -> None:
    server, auth = smart
    revoked = {"token-1"}
    gw = gateway(lambda h: h is not None and h[7:] in server.issued and h[7:] not in revoked)
    client = make_client(gw.base_url, auth=auth)
    client.put(patient("p1"))  # gets token-1, refused, refreshes to token-2
    assert gw.seen == ["Bearer token-1", "Bearer token-2"]
    revoked.add("token-2")
    revoked.add("token-3")
    with pytest.raises(AuthError):
        client.read("Patient", "p1")  # refreshed once (token-3), then gives up
    assert gw.seen[2:] == ["Bearer token-2", "Bearer token-3"]


def test_expired_smart_token_is_renewed_before_use(
    smart: tuple[TokenServer, SmartBackendAuth], gateway: Any, make_client: MakeClient
) -> None:
    server, auth = smart
    server.expires_in = 30  # shorter than the 60 s refresh margin: never reused
    gw = gateway(lambda header: header is not None and header[7:] in server.issued)
    client = make_client(gw.base_url, auth=auth)
    client.capabilities()
    client.capabilities()
    assert server.issued == ["token-1", "token-2"]
    assert server.refusals == []


def test_token_endpoint_refusing_the_key_is_an_auth_error(make_client: MakeClient) -> None:
    public, _ = _key_pem("RS384")
    _, other_pem = _key_pem("RS384")
    server = TokenServer("dipro-job", public, "key-1")
    try:
        auth = SmartBackendAuth(
            token_url=server.url, client_id="dipro-job", private_key=other_pem, key_id="key-1"
        )
        with pytest.raises(AuthError, match="invalid_client"):
            auth.access_token()
        assert server.issued == []
        assert server.refusals
    finally:
        server.close()
