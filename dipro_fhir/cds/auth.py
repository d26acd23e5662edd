"""Trusting CDS Clients: the EHR's signed JWT on every call (CDS Hooks 2.0, "Trusting CDS
Clients").

The service answers with patient scores, so it requires authentication once an EHR is
configured (``DIPRO_CDS__TRUSTED_CLIENTS``: issuer -> JWK Set URL). Every call, discovery
included, carries ``Authorization: Bearer <JWT>``; the JWT

* is signed with an asymmetric algorithm (``none`` and HMAC are refused, as the
  specification requires) by a key of the issuer's JWK Set, found by ``kid``;
* names a trusted issuer (``iss``), and a ``jku`` header, when present, is that issuer's
  configured JWK Set URL (the allowlist of ``iss`` and ``jku`` the specification asks for);
* has ``aud`` equal to the endpoint called (``{base}/cds-services`` or
  ``{base}/cds-services/{id}``), ``exp`` in the future, ``iat`` and a ``jti``;
* is seen once: a ``jti`` already used before its ``exp`` is a replay.

A refusal names the rule broken, never the token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Final

import jwt

#: Asymmetric JWS algorithms (RFC 7518); CDS Hooks recommends ES384 and RS384.
ALGORITHMS: Final[tuple[str, ...]] = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
)
LEEWAY_S: Final[float] = 30.0
JWKS_TIMEOUT_S: Final[float] = 5.0


class ClientRejected(Exception):
    """The call's JWT does not establish a trusted CDS Client (HTTP 401)."""


class ClientVerifier:
    """Checks the JWTs of the trusted CDS Clients (module docstring).

    Args:
        trusted: Issuer -> the URL of its JWK Set.
    """

    def __init__(self, trusted: Mapping[str, str]) -> None:
        self._urls = dict(trusted)
        self._keys = {
            issuer: jwt.PyJWKClient(url, cache_keys=True, timeout=JWKS_TIMEOUT_S)
            for issuer, url in trusted.items()
        }
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(self, authorization: str | None, audience: str) -> str:
        """Check the ``Authorization`` header of a call to ``audience``; return the issuer.

        Raises:
            ClientRejected: No bearer JWT, or one that breaks a rule of the module docstring.
        """
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ClientRejected("no bearer JWT in the Authorization header")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise ClientRejected("the bearer token is not a JWT") from exc
        issuer = unverified.get("iss")
        if header.get("alg") not in ALGORITHMS:
            raise ClientRejected("the JWT is not signed with an asymmetric algorithm")
        if not isinstance(issuer, str) or issuer not in self._keys:
            raise ClientRejected("the JWT's issuer is not a trusted CDS Client")
        if header.get("jku") not in (None, self._urls[issuer]):
            raise ClientRejected("the JWT's jku is not the issuer's configured JWK Set")
        try:
            key = self._keys[issuer].get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(ALGORITHMS),
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY_S,
                options={"require": ["iss", "aud", "exp", "iat", "jti"]},
            )
        except jwt.PyJWKClientError as exc:
            raise ClientRejected("no key of the issuer's JWK Set verifies the JWT") from exc
        except jwt.PyJWTError as exc:
            raise ClientRejected(f"the JWT is not valid here ({type(exc).__name__})") from exc
        self._once(str(claims["jti"]), float(claims["exp"]))
        return issuer

    def _once(self, jti: str, expires: float) -> None:
        now = time.time()
        with self._lock:
            for old in [k for k, exp in self._seen.items() if exp + LEEWAY_S < now]:
                del self._seen[old]
            if jti in self._seen:
                raise ClientRejected("the JWT's jti was used before (a replay)")
            self._seen[jti] = expires
