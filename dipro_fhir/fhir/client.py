"""A small, careful FHIR R4 REST client over one pooled ``requests.Session``.

Why not a FHIR client library: we need exact control of retries (only idempotent requests,
``Retry-After`` honoured and capped), of paging (``Bundle.link`` ``next`` followed as an
opaque URL, FHIR R4 section 3.1.1.3 "Paging", never built by the client) and of logging:
search URLs carry patient ids, so only the method, resource type, status, duration and
retry count are logged, never URLs with queries, headers or bodies.

Every ``GET`` says ``Cache-Control: no-cache``: HAPI FHIR answers a repeated search from a
cache for 60 s by default (``reuse_cached_search_results_millis``), which would hide what
was written a moment ago (HAPI docs, "Search: Cache-Control"). Servers behind a reverse
proxy may build ``next`` links from their internal address; ``next_link_base`` names that
address, and such links are rewritten onto ``base_url``. Without it only same-origin links
are followed.

What one request sends and how its answer is read (session, headers, body, the log line of
an attempt) is :mod:`dipro_fhir.fhir.exchange`; Bundle links are :mod:`dipro_fhir.fhir.bundles`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote, urljoin

import requests

from dipro_fhir.core.errors import InvalidResource, ServerProtocolError, SourceUnavailable
from dipro_fhir.core.limits import DEFAULT_LIMITS, InputLimits, require_fhir_id
from dipro_fhir.fhir.auth import FhirAuth
from dipro_fhir.fhir.bundles import bundle_is_idempotent, next_link
from dipro_fhir.fhir.exchange import (
    FHIR_JSON,
    IDEMPOTENT_METHODS,
    TRANSIENT_ERRORS,
    Exchange,
    MalformedBody,
    Observer,
    SearchParams,
    default_headers,
    encode_params,
    log_attempt,
    origin,
    pooled_session,
    read_body,
)
from dipro_fhir.fhir.retry import RETRYABLE_STATUSES, RetryPolicy


class FhirClient:
    """FHIR R4 REST client: read, search with paging, count, put, create, transaction, batch.

    Args:
        base_url: The FHIR base, e.g. ``https://fhir.example.org/r4``.
        session: A session to use (the caller closes it); by default the client makes one
            with a connection pool of ``pool_size`` and closes it in :meth:`close`.
        auth: How to authenticate; ``None`` sends no credentials.
        timeout_s: Connect and read timeout of every request.
        retry: Retry policy for 429/502/503/504 and connection failures.
        verify_tls: ``requests``' ``verify``: ``True``, ``False`` or a CA bundle path.
        page_size: ``_count`` sent with searches that do not set one.
        pool_size: Connections kept open to the server.
        max_pages: Upper bound of pages followed by one search (loop guard).
        next_link_base: The base URL a server behind a proxy puts into its ``next`` links;
            links under it are rewritten onto ``base_url``. ``None``: same origin only.
        limits: Largest body and deepest JSON nesting accepted (a breach raises
            :class:`~dipro_fhir.core.limits.InputLimitExceeded`, a data problem).
        observers: Called with an :class:`~dipro_fhir.fhir.exchange.Exchange` after every
            request (the audit trail); an observer must not raise.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        auth: FhirAuth | None = None,
        timeout_s: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so sharing is safe
        verify_tls: bool | str = True,
        page_size: int = 200,
        pool_size: int = 10,
        max_pages: int = 100_000,
        next_link_base: str | None = None,
        limits: InputLimits = DEFAULT_LIMITS,
        observers: Sequence[Observer] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.observers = list(observers)
        self.auth = auth
        self.timeout_s = timeout_s
        self.retry = retry
        self.verify_tls = verify_tls
        self.page_size = page_size
        self.max_pages = max_pages
        self.next_link_base = next_link_base.rstrip("/") if next_link_base else None
        self.limits = limits
        self._owns_session = session is None
        self._session = session if session is not None else pooled_session(pool_size)

    # -- reading --------------------------------------------------------------------------

    def capabilities(self) -> dict[str, Any]:
        """Return the server's CapabilityStatement (``GET [base]/metadata``)."""
        return self._call("GET", "metadata", label="CapabilityStatement")

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        """Return one resource (``GET [base]/Type/id``).

        Raises:
            ResourceNotFound: The server answered 404 or 410.
            InputLimitExceeded: ``resource_id`` is not a FHIR id (nothing is sent).
        """
        require_fhir_id(resource_id, f"{resource_type} id")
        return self._call("GET", f"{resource_type}/{_segment(resource_id)}", label=resource_type)

    def search(self, resource_type: str, params: SearchParams) -> Iterator[dict[str, Any]]:
        """Yield every matching resource over all pages (``search.mode`` match or absent).

        Included resources (``search.mode`` include) and server warnings (outcome) are
        skipped; use :meth:`search_pages` to see them.
        """
        for page in self.search_pages(resource_type, params):
            for entry in page.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                mode = (entry.get("search") or {}).get("mode", "match") if resource else None
                if isinstance(resource, dict) and mode == "match":
                    yield resource

    def search_pages(self, resource_type: str, params: SearchParams) -> Iterator[dict[str, Any]]:
        """Yield each searchset Bundle, following ``next`` links as opaque URLs.

        Raises:
            ServerProtocolError: A ``next`` link repeats (a paging loop), leads to another
                server, or ``max_pages`` is exceeded (the same answer on every try).
            SourceUnavailable: A page could not be fetched after retries.
        """
        query = encode_params(params)
        if not any(name == "_count" for name, _ in query):
            query.append(("_count", str(self.page_size)))
        page = self._call("GET", resource_type, params=query, label=resource_type)
        seen: set[str] = set()
        while True:
            yield page
            link = next_link(page)
            if link is None:
                return
            url = self._check_page_link(link, seen)
            page = self._call("GET", url, label=resource_type)

    def count(self, resource_type: str, params: SearchParams) -> int:
        """Return how many resources match (``_summary=count``, ``Bundle.total``)."""
        query = [*encode_params(params), ("_summary", "count")]
        bundle = self._call("GET", resource_type, params=query, label=resource_type)
        total = bundle.get("total")
        if not isinstance(total, int):
            raise InvalidResource(f"count of {resource_type}: the Bundle has no total")
        return total

    # -- writing --------------------------------------------------------------------------

    def put(self, resource: dict[str, Any], *, if_match: str | None = None) -> dict[str, Any]:
        """Create or update a resource at its client-assigned id (``PUT [base]/Type/id``).

        Args:
            resource: The resource, with ``resourceType`` and ``id``.
            if_match: A version id (``"3"`` or ``W/"3"``) for a version-aware update; the
                server answers 412 (``PublishConflict``) when the resource has moved on.

        Returns:
            The stored resource as the server returned it (with ``meta.versionId``).
        """
        resource_type, resource_id = _type_and_id(resource)
        headers = {"If-Match": _weak_etag(if_match)} if if_match else {}
        return self._call(
            "PUT",
            f"{resource_type}/{_segment(resource_id)}",
            json_body=resource,
            headers=headers,
            label=resource_type,
        )

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Create a resource with a server-assigned id (``POST``); never retried."""
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str):
            raise ValueError("resource has no resourceType")
        return self._call("POST", resource_type, json_body=resource, label=resource_type)

    def transaction(self, bundle: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """Post a transaction Bundle (all or nothing) and return the transaction-response.

        Args:
            bundle: A Bundle with ``type`` ``transaction``.
            idempotent: Retry transient failures. Allowed only when every entry is a
                ``PUT``/``GET``/``DELETE`` of a client-assigned ``Type/id`` (so repeating
                the whole bundle cannot create duplicates).
        """
        return self._post_bundle(bundle, "transaction", idempotent)

    def batch(self, bundle: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """Post a batch Bundle (entries succeed or fail one by one); see :meth:`transaction`."""
        return self._post_bundle(bundle, "batch", idempotent)

    def send(
        self,
        method: str,
        url: str,
        *,
        label: str,
        headers: Mapping[str, str] | None = None,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
        retryable: bool | None = None,
        stream: bool = False,
        authenticated: bool = True,
    ) -> requests.Response:
        """Send one request with this client's retries and return the raw response (any
        status), for operations outside search and CRUD (Bulk Data ``$export``).

        Args:
            method: HTTP method.
            url: An absolute URL or a path under ``base_url``.
            label: What to log (never the URL: it may carry ids).
            headers: Extra headers (``Accept`` defaults to FHIR JSON).
            params: Query parameters.
            body: A FHIR resource to send as JSON.
            retryable: Retry on 429/5xx and broken connections; by default only
                idempotent methods are.
            stream: Leave the body unread (``Response.iter_content``).
            authenticated: Send credentials; ``False`` for a file store that must not see them.

        Raises:
            SourceUnavailable: The connection kept failing after the retries.
        """
        full = url if url.startswith(("http://", "https://")) else self.base_url + url
        response, _ = self._send(
            method,
            full,
            label,
            method in IDEMPOTENT_METHODS if retryable is None else retryable,
            auth=self.auth if authenticated else None,
            headers={
                "Accept": FHIR_JSON,
                **({"Content-Type": FHIR_JSON} if body is not None else {}),
                **(headers or {}),
            },
            params=params,
            json=body,
            stream=stream,
        )
        return response

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool if the client made it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _post_bundle(self, bundle: dict[str, Any], kind: str, idempotent: bool) -> dict[str, Any]:
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != kind:
            raise ValueError(f"expected a Bundle of type {kind}")
        if idempotent and not bundle_is_idempotent(bundle):
            raise ValueError(f"{kind} has entries that are not PUT/GET/DELETE of Type/id")
        return self._call(
            "POST", "", json_body=bundle, label=f"Bundle/{kind}", retryable=idempotent
        )

    def _check_page_link(self, link: str, seen: set[str]) -> str:
        url = urljoin(self.base_url, link)
        if self.next_link_base and url.startswith(self.next_link_base):
            rest = url.removeprefix(self.next_link_base)
            if rest[:1] in ("", "/", "?"):  # HAPI: "[base]?_getpages=..."
                url = self.base_url.rstrip("/") + rest
        if origin(url) != origin(self.base_url):
            raise ServerProtocolError("search: the next link points to another server")
        if url in seen:
            raise ServerProtocolError("search: the server repeated a next link (paging loop)")
        if len(seen) >= self.max_pages:
            raise ServerProtocolError(f"search: more than {self.max_pages} pages")
        seen.add(url)
        return url

    def _call(
        self,
        method: str,
        path: str,
        *,
        label: str,
        params: list[tuple[str, str]] | None = None,
        json_body: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retryable: bool | None = None,
    ) -> dict[str, Any]:
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        may_retry = method in IDEMPOTENT_METHODS if retryable is None else retryable
        tries = self.retry.max_attempts if may_retry else 1
        for body_attempt in range(1, tries + 1):
            status: int | None = None
            try:
                response, attempts = self._send(
                    method,
                    url,
                    label,
                    may_retry,
                    params=params,
                    json=json_body,
                    auth=self.auth,
                    headers={**default_headers(method, json_body), **(headers or {})},
                )
                status = response.status_code
            finally:
                if self.observers:
                    exchange = Exchange(method, path, tuple(params or ()), json_body, status)
                    for observe in self.observers:
                        observe(exchange)
            try:
                return read_body(
                    response, action=f"{method} {label}", attempts=attempts, limits=self.limits
                )
            except MalformedBody:
                log_attempt(method, label, response.status_code, 0.0, body_attempt, "malformed")
                if body_attempt >= tries:
                    raise
                time.sleep(self.retry.delay_s(body_attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, method: str, url: str, label: str, may_retry: bool, **kwargs: Any
    ) -> tuple[requests.Response, int]:
        attempts = self.retry.max_attempts if may_retry else 1
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                response = self._session.request(
                    method,
                    url,
                    timeout=self.timeout_s,
                    verify=self.verify_tls,
                    **kwargs,
                )
            except TRANSIENT_ERRORS as exc:
                log_attempt(method, label, None, started, attempt, type(exc).__name__)
                if attempt >= attempts:
                    raise SourceUnavailable(
                        f"{method} {label}: {type(exc).__name__} after {attempt} attempts"
                    ) from exc
                time.sleep(self.retry.delay_s(attempt))
                continue
            status = response.status_code
            log_attempt(method, label, status, started, attempt, None)
            if status == 401 and not refreshed and kwargs.get("auth") is not None and self.auth:
                refreshed = self.auth.refresh_after_unauthorized()
                if refreshed:
                    continue
            if status in RETRYABLE_STATUSES and attempt < attempts:
                response.close()
                time.sleep(self.retry.delay_s(attempt, response.headers.get("Retry-After")))
                continue
            return response, attempt


def _segment(resource_id: str) -> str:
    """One URL path segment: nothing in an id may climb out of ``Type/`` (``../``)."""
    return quote(resource_id, safe="")


def _type_and_id(resource: Mapping[str, Any]) -> tuple[str, str]:
    resource_type, resource_id = resource.get("resourceType"), resource.get("id")
    if not isinstance(resource_type, str) or not isinstance(resource_id, str):
        raise ValueError("PUT needs a resource with resourceType and id")
    return resource_type, resource_id


def _weak_etag(version: str) -> str:
    return version if version.startswith(("W/", '"')) else f'W/"{version}"'
