"""How the FHIR client authenticates: none, HTTP Basic, a static bearer token, or SMART
Backend Services.

Every scheme is a ``requests`` auth object (it sets the ``Authorization`` header of each
request). :meth:`FhirAuth.refresh_after_unauthorized` lets the client try once more after a
401 when fresh credentials might help (an expired or revoked SMART access token); schemes
with fixed credentials say no, so a wrong password fails at once without retries.

SMART Backend Services (https://hl7.org/fhir/smart-app-launch/backend-services.html): the
client signs a short-lived JWT with its private key (RS384 or ES384, claims ``iss`` = ``sub``
= client id, ``aud`` = token endpoint, ``exp`` at most five minutes ahead, a unique ``jti``,
``kid`` in the header), posts it with ``grant_type=client_credentials`` to the token
endpoint, and caches the access token until shortly before ``expires_in``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from base64 import b64encode
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
import requests
from requests.auth import AuthBase

from dipro_fhir.core.errors import AuthError, SourceUnavailable

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SMART_ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME_S = 300  # Backend Services: "exp ... no more than five minutes"


class SecretLike(Protocol):
    """Anything with pydantic ``SecretStr``'s accessor."""

    def get_secret_value(self) -> str: ...


Secret = str | SecretLike


def reveal(secret: Secret) -> str:
    """Return the plain text of a ``str`` or a ``SecretStr``-like value."""
    return secret if isinstance(secret, str) else secret.get_secret_value()


class FhirAuth(AuthBase):
    """Base of the FHIR auth schemes; by itself it sends no credentials."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request

    def refresh_after_unauthorized(self) -> bool:
        """Forget cached credentials after a 401; say whether one more try makes sense."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoAuth(FhirAuth):
    """No credentials (an open server, or one behind an authenticating gateway)."""


class BasicAuth(FhirAuth):
    """HTTP Basic (RFC 7617) with a user name and a password (``str`` or ``SecretStr``)."""

    def __init__(self, username: str, password: Secret) -> None:
        self._username = username
        self._password = password

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        pair = f"{self._username}:{reveal(self._password)}".encode()
        request.headers["Authorization"] = "Basic " + b64encode(pair).decode("ascii")
        return request


class BearerTokenAuth(FhirAuth):
    """A fixed OAuth bearer token (RFC 6750), e.g. one issued by a gateway for the job."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {reveal(self._token)}"
        return request


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A token from the token endpoint and the monotonic time it stops being used."""

    value: str
    use_until: float


class SmartBackendAuth(FhirAuth):
    """SMART Backend Services client-credentials flow with a cached access token."""

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        private_key: Secret | bytes,
        key_id: str,
        scope: str = "system/*.read",
        algorithm: str = "RS384",
        session: requests.Session | None = None,
        timeout_s: float = 10.0,
        refresh_margin_s: float = 60.0,
        assertion_lifetime_s: int = MAX_ASSERTION_LIFETIME_S,
        verify_tls: bool | str = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in SMART_ALGORITHMS:
            raise ValueError(f"SMART Backend Services needs one of {SMART_ALGORITHMS}")
        if not 0 < assertion_lifetime_s <= MAX_ASSERTION_LIFETIME_S:
            raise ValueError("assertion lifetime must lie in (0, 300] seconds")
        self.token_url = token_url
        self.client_id = client_id
        self.scope = scope
        self.algorithm = algorithm
        self._key = private_key
        self._key_id = key_id
        self._session = session if session is not None else requests.Session()
        self._timeout_s = timeout_s
        self._margin_s = refresh_margin_s
        self._lifetime_s = assertion_lifetime_s
        self._verify = verify_tls
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = threading.Lock()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.access_token()}"
        return request

    def refresh_after_unauthorized(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def access_token(self) -> str:
        """Return a valid access token, asking the token endpoint when none is cached."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._token.use_until:
                self._token = self._request_token()
            return self._token.value

    def client_assertion(self) -> str:
        """Sign a fresh client assertion JWT (Backend Services, "Protocol details")."""
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.token_url,
            "exp": now + self._lifetime_s,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        key = self._key if isinstance(self._key, bytes) else reveal(self._key)
        headers = {"kid": self._key_id, "typ": "JWT"}
        return jwt.encode(claims, key, algorithm=self.algorithm, headers=headers)

    def _request_token(self) -> AccessToken:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.client_assertion(),
        }
        started = time.monotonic()
        try:
            response = self._session.post(
                self.token_url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self._timeout_s,
                verify=self._verify,
            )
        except requests.RequestException as exc:
            raise SourceUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from exc
        log.info(
            "token request: status=%d duration_ms=%d",
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return self._read_token_response(response, started)

    def _read_token_response(self, response: requests.Response, started: float) -> AccessToken:
        if response.status_code >= 500 or response.status_code == 429:
            raise SourceUnavailable(
                f"token endpoint: HTTP {response.status_code}", status=response.status_code
            )
        body = _json_or_none(response)
        if response.status_code != 200 or body is None:
            error = body.get("error", "?") if body else "?"
            raise AuthError(
                f"token endpoint refused the client: HTTP {response.status_code} error={error}",
                status=response.status_code,
            )
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise AuthError("token endpoint answered without an access_token")
        expires_in = body.get("expires_in", 300)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
        return AccessToken(token, started + max(0.0, lifetime - self._margin_s))

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, alg={self.algorithm})"


@dataclass(frozen=True, slots=True)
class SmartConfiguration:
    """The parts of ``.well-known/smart-configuration`` that Backend Services needs."""

    token_endpoint: str
    signing_algorithms: tuple[str, ...]
    scopes_supported: tuple[str, ...]


def discover_smart_configuration(
    base_url: str, *, session: requests.Session | None = None, timeout_s: float = 10.0
) -> SmartConfiguration:
    """Read ``{base}/.well-known/smart-configuration`` (SMART App Launch 2.x, section 2.1).

    Raises:
        SourceUnavailable: The server could not be reached or sent no usable JSON.
        AuthError: The document names no ``token_endpoint``.
    """
    http = session if session is not None else requests.Session()
    url = base_url.rstrip("/") + "/.well-known/smart-configuration"
    try:
        response = http.get(url, headers={"Accept": "application/json"}, timeout=timeout_s)
    except requests.RequestException as exc:
        raise SourceUnavailable(f"smart-configuration: {type(exc).__name__}") from exc
    body = _json_or_none(response)
    if response.status_code != 200 or body is None:
        raise SourceUnavailable(
            f"smart-configuration: HTTP {response.status_code}", status=response.status_code
        )
    endpoint = body.get("token_endpoint")
    if not isinstance(endpoint, str):
        raise AuthError("smart-configuration names no token_endpoint")
    algorithms = body.get("token_endpoint_auth_signing_alg_values_supported") or []
    scopes = body.get("scopes_supported") or []
    return SmartConfiguration(endpoint, tuple(map(str, algorithms)), tuple(map(str, scopes)))


def _json_or_none(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
