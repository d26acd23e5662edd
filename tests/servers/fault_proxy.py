"""A fault-injecting HTTP proxy in front of a real server, and its pytest fixture.

Clients under test talk to the proxy; it forwards to the real server (the FHIR harness,
Orthanc) on loopback and, on request, breaks chosen requests the way production networks and
servers do: HTTP 429 with ``Retry-After``, 503, 500, a connection reset or a close without any
response, a delay (to trip client timeouts), a malformed (truncated JSON) body, or a body cut
short of its ``Content-Length``. It logs every request it saw so tests can assert retries.

Everything else is passed through unchanged and binary-safe, with the client's ``Host`` header
kept, so a server that builds absolute links (FHIR ``Bundle.link``, DICOMweb retrieve URLs)
points them back at the proxy and paging stays behind the faults. ``keep_host=False`` makes
it a reverse proxy that sends the upstream's own address instead, as many hospital gateways
do: the server's links then name its internal address.

Usage::

    def test_retries_429(fhir_base_url, fault_proxy):
        proxy = fault_proxy(fhir_base_url)
        proxy.inject("429", times=2, match=r"/Observation", retry_after=1)
        ...  # a client against proxy.base_url
        assert proxy.count(path=r"/Observation") == 3
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest

FaultKind = Literal[
    "429", "503", "500", "status", "reset", "close", "delay", "malformed", "truncate", "self-next"
]
FAULT_KINDS: frozenset[str] = frozenset(
    ["429", "503", "500", "status", "reset", "close", "delay", "malformed", "truncate", "self-next"]
)
# RFC 9110 section 7.6.1: hop-by-hop headers are not forwarded.
HOP_BY_HOP = frozenset(
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
)
CHUNK_BYTES = 64 * 1024
UPSTREAM_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """One request the proxy received.

    Attributes:
        method: HTTP method.
        path: URL path without the query string.
        query: Query string without ``?`` (may be empty).
        fault: The fault kind injected into this request, or None if passed through.
        body_type: The ``type`` of a JSON request body that is a FHIR Bundle
            (``transaction``, ``batch``), else ``""``.
    """

    method: str
    path: str
    query: str
    fault: str | None
    body_type: str = ""


@dataclass(slots=True)
class _Rule:
    kind: str
    remaining: int
    skip: int
    path_pattern: re.Pattern[str] | None
    method: str | None
    options: dict[str, Any] = field(default_factory=dict)
    every: int = 1
    seen: int = 0

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path_pattern is None or self.path_pattern.search(target) is not None


class FaultProxy:
    """A running proxy on 127.0.0.1; see the module docstring.

    Attributes:
        base_url: The target base URL with the proxy's host and port in place of the target's.
    """

    def __init__(self, target_base_url: str, *, keep_host: bool = True) -> None:
        target = urlsplit(target_base_url)
        self.keep_host = keep_host
        if target.scheme != "http" or target.hostname is None:
            raise ValueError("the fault proxy forwards plain http:// targets only")
        self.target_host = target.hostname
        self.target_port = target.port or 80
        self._rules: list[_Rule] = []
        self._seen: list[SeenRequest] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = _ProxyServer(self)
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}{target.path.rstrip('/')}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def inject(
        self,
        kind: FaultKind,
        times: int = 1,
        match: str | None = None,
        *,
        method: str | None = None,
        skip: int = 0,
        every: int = 1,
        **options: Any,
    ) -> None:
        """Break the next ``times`` matching requests.

        Args:
            kind: ``"429"`` (options: ``retry_after``, default ``"1"``), ``"503"`` (optional
                ``retry_after``), ``"500"``, ``"status"`` (option ``status``: any code),
                ``"reset"`` (TCP RST, no response), ``"close"`` (FIN, no response), ``"delay"``
                (option ``delay_s``, then forward), ``"malformed"`` (forward, but send only the
                first half of the body with a consistent Content-Length: truncated JSON),
                ``"truncate"`` (forward, announce the full Content-Length, send half, close),
                ``"self-next"`` (forward, then make the Bundle's ``next`` link the request's own
                URL: a server whose paging loops).
            times: How many matching requests to break.
            match: Regex searched in the path plus query (``/fhir/Observation?subject=...``);
                None matches every request.
            method: Only requests with this HTTP method (None: any).
            skip: Let this many matching requests through first.
            every: Break only every ``every``-th matching request (a fault rate: the other
                requests pass, so a retried request gets through).
            **options: Per-kind options, above.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        pattern = re.compile(match) if match is not None else None
        with self._lock:
            self._rules.append(
                _Rule(kind, times, skip, pattern, method, dict(options), every=max(every, 1))
            )

    def clear(self) -> None:
        """Drop pending faults and forget the request log."""
        with self._lock:
            self._rules.clear()
            self._seen.clear()

    @property
    def requests(self) -> list[SeenRequest]:
        """A copy of the requests seen so far, in arrival order."""
        with self._lock:
            return list(self._seen)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        """Count seen requests whose path plus query matches regex ``path`` and ``method``."""
        pattern = re.compile(path) if path is not None else None
        return sum(
            1
            for seen in self.requests
            if (method is None or seen.method == method.upper())
            and (pattern is None or pattern.search(_target(seen.path, seen.query)))
        )

    def pending_faults(self) -> int:
        """How many injected faults have not fired yet."""
        with self._lock:
            return sum(rule.remaining for rule in self._rules)

    def take_fault(
        self, method: str, path: str, query: str, body: bytes | None = None
    ) -> _Rule | None:
        """Record a request and return the fault to apply to it, if any (thread-safe)."""
        target = _target(path, query)
        with self._lock:
            chosen = None
            for rule in self._rules:
                if rule.remaining > 0 and rule.matches(method, target):
                    if rule.skip > 0:
                        rule.skip -= 1
                        continue
                    rule.seen += 1
                    if rule.seen % rule.every:
                        continue
                    rule.remaining -= 1
                    chosen = rule
                    break
            kind = chosen.kind if chosen else None
            self._seen.append(SeenRequest(method, path, query, kind, _bundle_type(body)))
            return chosen

    def close(self) -> None:
        """Stop serving; in-flight delays end at once."""
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _bundle_type(body: bytes | None) -> str:
    if not body or not body.lstrip().startswith(b"{"):
        return ""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        return str(data.get("type", ""))
    return ""


def _target(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: FaultProxy) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.proxy = proxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up (expected after timeouts and injected faults)."""


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm and delayed ACKs each
    # response would wait about 40 ms for the client's ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (URLs may carry identifiers)."""

    def _proxy(self) -> FaultProxy:
        server = self.server
        assert isinstance(server, _ProxyServer)
        return server.proxy

    def _handle(self) -> None:
        proxy = self._proxy()
        split = urlsplit(self.path)
        body = self._read_body()
        rule = proxy.take_fault(self.command, split.path, split.query, body)
        kind = rule.kind if rule else None
        if rule is not None and kind in {"429", "503", "500", "status"}:
            self._send_injected_status(rule)
        elif kind == "reset":
            # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif kind == "close":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            if rule is not None and kind == "delay":
                proxy.stopping.wait(float(rule.options.get("delay_s", 5.0)))
            self._forward(body, kind)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length", "0") or 0)
        return self.rfile.read(length) if length > 0 else None

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _send_injected_status(self, rule: _Rule) -> None:
        status = {"429": 429, "503": 503, "500": 500}.get(rule.kind) or int(rule.options["status"])
        payload = json.dumps(
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "transient", "details": {"text": "injected"}}
                ],
            }
        ).encode()
        self.send_response_only(status)
        retry_after = rule.options.get("retry_after", "1" if rule.kind == "429" else None)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self, body: bytes | None, kind: str | None) -> None:
        proxy = self._proxy()
        upstream = http.client.HTTPConnection(
            proxy.target_host, proxy.target_port, timeout=UPSTREAM_TIMEOUT_S
        )
        try:
            upstream.connect()
            assert upstream.sock is not None
            upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            if not proxy.keep_host:
                headers = {k: v for k, v in headers.items() if k.lower() != "host"}
                headers["Host"] = f"{proxy.target_host}:{proxy.target_port}"
            if body is not None:
                headers["Content-Length"] = str(len(body))
            if kind == "self-next":  # the body is rewritten: ask for it uncompressed
                headers = {k: v for k, v in headers.items() if k.lower() != "accept-encoding"}
                headers["Accept-Encoding"] = "identity"
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            if kind in {"malformed", "truncate"}:
                self._send_cut(response, announce_full=kind == "truncate")
            elif kind == "self-next":
                self._send_self_next(response)
            else:
                self._stream(response)
        except OSError:
            # The upstream went away: answer 502 like a gateway would (RFC 9110 section 15.6.3).
            self.send_error(502)
        finally:
            upstream.close()

    def _send_head(self, response: http.client.HTTPResponse, length: int | None) -> None:
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        elif self.command != "HEAD":
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _stream(self, response: http.client.HTTPResponse) -> None:
        declared = response.getheader("Content-Length")
        length = int(declared) if declared is not None else None
        if self.command == "HEAD" or response.status in (204, 304):
            self._send_head(response, length if length is not None else 0)
            return
        self._send_head(response, length)
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            if length is not None:
                self.wfile.write(chunk)
            else:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        if length is None:
            self.wfile.write(b"0\r\n\r\n")

    def _send_self_next(self, response: http.client.HTTPResponse) -> None:
        bundle = json.loads(response.read())
        own = f"http://{self.headers.get('Host')}{self.path}"
        links = [link for link in bundle.get("link", []) if link.get("relation") != "next"]
        bundle["link"] = [*links, {"relation": "next", "url": own}]
        payload = json.dumps(bundle).encode()
        self._send_head(response, len(payload))
        self.wfile.write(payload)

    def _send_cut(self, response: http.client.HTTPResponse, *, announce_full: bool) -> None:
        payload = response.read()
        cut = payload[: len(payload) // 2]
        self._send_head(response, len(payload) if announce_full else len(cut))
        self.wfile.write(cut)
        if announce_full:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: ``fault_proxy(target_base_url, keep_host=True) -> FaultProxy``; all are
    closed at teardown."""
    proxies: list[FaultProxy] = []

    def start(target_base_url: str, *, keep_host: bool = True) -> FaultProxy:
        proxy = FaultProxy(target_base_url, keep_host=keep_host)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        proxy.close()
