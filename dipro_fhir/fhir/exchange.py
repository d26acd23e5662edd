"""The HTTP exchange beneath :class:`~dipro_fhir.fhir.client.FhirClient`: what one request
sends and how its answer is read.

The pooled ``requests.Session`` (no ``urllib3`` retries: the client retries itself), the
default headers (``Cache-Control: no-cache`` on every ``GET``, see the client's module
docstring), the transport errors and methods that may be retried, query parameters as
sent, the answer's body read as one FHIR resource (an error status becomes the matching
:mod:`~dipro_fhir.core.errors` exception; a 2xx body that is no JSON object is
:class:`MalformedBody`, which the client retries), and :class:`Exchange`, the record of one
request handed to observers (the audit trail).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from dipro_fhir.core.errors import InvalidResource, SourceUnavailable
from dipro_fhir.core.limits import InputLimitExceeded, InputLimits, loads
from dipro_fhir.fhir.status import error_for_status

#: Attempts are logged under the client's name, whichever module writes them.
log = logging.getLogger("dipro_fhir.fhir.client")

FHIR_JSON = "application/fhir+json"
SearchParams = Mapping[str, str | Sequence[str]]
TRANSIENT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})


class MalformedBody(SourceUnavailable):
    """A 2xx answer whose body is not a JSON object (cut short, garbled): retried."""


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request the client made and how it ended, for observers (the audit trail).

    Attributes:
        method: HTTP method.
        path: ``Type``, ``Type/id``, ``""`` (a Bundle to the base) or a full ``next`` URL.
        params: Query parameters as sent (patient data possible: observers redact).
        body: The JSON body sent, or ``None``.
        status: The final HTTP status, or ``None`` when no answer came (transport error).
    """

    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    body: Mapping[str, Any] | None
    status: int | None


Observer = Callable[[Exchange], None]


def read_body(
    response: requests.Response, *, action: str, attempts: int, limits: InputLimits
) -> dict[str, Any]:
    """The answer's body as a FHIR resource.

    Raises:
        DiproFhirError: The status's error (:func:`~dipro_fhir.fhir.status.error_for_status`).
        MalformedBody: A success whose body is not a JSON object.
        InvalidResource: A JSON object without a ``resourceType``.
        InputLimitExceeded: The body breaches ``limits`` (one resource in it larger than
            ``max_resource_bytes`` included).
    """
    status = response.status_code
    body = json_object(response, limits, action)
    if status >= 300:
        outcome = body if body and body.get("resourceType") == "OperationOutcome" else None
        raise error_for_status(status, outcome, action=action, attempts=attempts)
    if body is None:
        kind = response.headers.get("Content-Type", "no content type")
        raise MalformedBody(
            f"{action}: HTTP {status} with a body that is not a JSON object "
            f"({kind}, {len(response.content)} bytes)",
            status=status,
        )
    if not isinstance(body.get("resourceType"), str):
        raise InvalidResource(f"{action}: HTTP {status} with JSON that is no FHIR resource")
    if len(response.content) > limits.max_resource_bytes:  # else no resource in it can be
        check_resource_sizes(body, limits, action)
    return body


def check_resource_sizes(body: Mapping[str, Any], limits: InputLimits, action: str) -> None:
    """Refuse a resource over ``limits.max_resource_bytes`` (compact JSON, UTF-8), as the
    NDJSON reader refuses such a line: the body itself, or an entry of a Bundle.

    Raises:
        InputLimitExceeded: A resource is larger than the limit.
    """
    if body.get("resourceType") == "Bundle":
        entries = body.get("entry")
        listed = entries if isinstance(entries, list) else []
        resources = [e.get("resource") for e in listed if isinstance(e, dict)]
    else:
        resources = [body]
    for resource in resources:
        if not isinstance(resource, dict):
            continue
        size = len(json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode())
        if size > limits.max_resource_bytes:
            raise InputLimitExceeded(
                f"{action}: {str(resource.get('resourceType'))[:40]} resource of {size} bytes > "
                f"limit {limits.max_resource_bytes}"
            )


def json_object(
    response: requests.Response, limits: InputLimits, action: str
) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` when it is empty, not JSON or not an object."""
    if not response.content:
        return None
    try:
        body = loads(response.content, limits, what=action)
    except ValueError:  # not JSON (InputLimitExceeded is no ValueError: it propagates)
        return None
    return body if isinstance(body, dict) else None


def encode_params(params: SearchParams) -> list[tuple[str, str]]:
    """Search parameters as query pairs, one pair per value."""
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        values = [value] if isinstance(value, str) else list(value)
        pairs.extend((name, str(item)) for item in values)
    return pairs


def default_headers(method: str, json_body: dict[str, Any] | None) -> dict[str, str]:
    """The headers of a read or write: FHIR JSON, no cached searches, the stored resource back."""
    headers = {"Accept": FHIR_JSON}
    if method == "GET":
        headers["Cache-Control"] = "no-cache"
    if json_body is not None:
        headers["Content-Type"] = FHIR_JSON
        headers["Prefer"] = "return=representation"
    return headers


def origin(url: str) -> tuple[str, str]:
    """A URL's scheme and host (with port), lower case: where a ``next`` link leads."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def pooled_session(pool_size: int) -> requests.Session:
    """A session keeping ``pool_size`` connections open, without ``urllib3`` retries."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def log_attempt(
    method: str, label: str, status: int | None, started: float, attempt: int, error: str | None
) -> None:
    """Log one attempt: method, label, status, error type, duration, attempt; never a URL."""
    duration_ms = (time.monotonic() - started) * 1000
    level = logging.DEBUG if status is not None and status < 400 else logging.WARNING
    log.log(
        level,
        "fhir %s %s status=%s error=%s duration_ms=%d attempt=%d",
        method,
        label,
        status,
        error,
        duration_ms,
        attempt,
    )
