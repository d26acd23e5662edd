"""Two small real HTTP servers on loopback for the auth tests.

- :class:`TokenServer`: a SMART Backend Services token endpoint. It verifies the client
  assertion JWT with the client's public key (signature, ``aud``, ``iss`` = ``sub``, ``exp``
  at most five minutes ahead, ``jti`` never reused, ``kid``) and issues opaque access tokens.
  The key is registered by value (``public_key`` and ``key_id``) or as a JWKS URL
  (``jwks_url``, fetched on every request and the key chosen by the assertion's ``kid``, as
  SMART Backend Services lets a client register).
- :class:`AuthGateway`: an authenticating gateway in front of the FHIR server (the harness
  itself checks no credentials). It records every ``Authorization`` header it receives,
  answers 401 to credentials its ``accept`` callable refuses and forwards the rest.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self._http.owner = self  # type: ignore[attr-defined]
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class TokenServer(_Server):
    """SMART token endpoint at ``{url}``; ``issued`` lists the tokens it gave out."""

    def __init__(
        self,
        client_id: str,
        public_key: Any = None,
        key_id: str | None = None,
        expires_in: int = 300,
        *,
        jwks_url: str | None = None,
    ):
        self.client_id, self.public_key, self.key_id = client_id, public_key, key_id
        self.jwks_url = jwks_url
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.refusals: list[str] = []
        self._jtis: set[str] = set()
        super().__init__(_TokenHandler)
        self.url = f"http://127.0.0.1:{self.port}/auth/token"

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            self._check(form)
        except (jwt.PyJWTError, ValueError) as exc:
            self.refusals.append(str(exc))
            return 401, {"error": "invalid_client"}
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        return 200, {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": form.get("scope", ""),
        }

    def _check(self, form: dict[str, str]) -> None:
        if form.get("grant_type") != "client_credentials":
            raise ValueError("grant_type")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise ValueError("client_assertion_type")
        assertion = form.get("client_assertion", "")
        kid = jwt.get_unverified_header(assertion).get("kid")
        if self.jwks_url is not None:
            public_key = self._registered_key(kid)
        elif kid != self.key_id:
            raise ValueError("kid")
        else:
            public_key = self.public_key
        claims = jwt.decode(
            assertion,
            public_key,
            algorithms=["RS384", "ES384"],
            audience=self.url,
            issuer=self.client_id,
            options={"require": ["exp", "jti", "sub", "iss", "aud"]},
        )
        if claims["sub"] != self.client_id or claims["exp"] > time.time() + 300:
            raise ValueError("sub or exp")
        if claims["jti"] in self._jtis:
            raise ValueError("jti reused")
        self._jtis.add(claims["jti"])

    def _registered_key(self, kid: Any) -> Any:
        assert self.jwks_url is not None
        with urllib.request.urlopen(self.jwks_url, timeout=10) as response:
            jwks = json.loads(response.read())
        for jwk in jwks.get("keys", []):
            if jwk.get("kid") == kid:
                return jwt.PyJWK(jwk).key
        raise ValueError("kid not in the registered JWKS")


class _TokenHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = parse_qs(self.rfile.read(length).decode())
        form = {key: values[0] for key, values in raw.items()}
        status, body = self.server.owner.answer(form)  # type: ignore[attr-defined]
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class AuthGateway(_Server):
    """Gateway at ``base_url`` forwarding to ``target_base_url`` when ``accept`` says so."""

    def __init__(self, target_base_url: str, accept: Callable[[str | None], bool]) -> None:
        target = urlsplit(target_base_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 80)
        self.accept = accept
        self.seen: list[str | None] = []
        super().__init__(_GatewayHandler)
        self.base_url = f"http://127.0.0.1:{self.port}{target.path}"


class _GatewayHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        gateway: AuthGateway = self.server.owner  # type: ignore[attr-defined]
        credentials = self.headers.get("Authorization")
        gateway.seen.append(credentials)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else None
        if not gateway.accept(credentials):
            self._reply(
                401,
                [],
                json.dumps(
                    {
                        "resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "login"}],
                    }
                ).encode(),
            )
            return
        upstream = http.client.HTTPConnection(*gateway.target, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        keep = [
            (k, v)
            for k, v in response.getheaders()
            if k.lower()
            not in ("connection", "transfer-encoding", "content-length", "content-type")
        ]
        self._reply(response.status, keep, response.read())
        upstream.close()

    def _reply(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
