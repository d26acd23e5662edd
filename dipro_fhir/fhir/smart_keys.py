"""SMART Backend Services key management: key pairs, the JWKS to register or serve, rotation.

SMART Backend Services (SMART App Launch 2.x, "Registering a client") has the client
register a public JWK Set, by value or as a URL the authorization server fetches, and sign
its client assertions with a private key named by ``kid``. A key folder holds:

* ``<kid>.pem``: each private key (PKCS#8, mode 0600);
* ``jwks.json``: the public keys still published (what to register or serve);
* ``signing.pem`` and ``signing.kid``: a copy of the key that signs now and its ``kid``.

Point the Airflow connection ``dipro_fhir`` at ``signing.pem``
(``extra.smart_private_key_path``) and leave ``extra.smart_key_id`` unset: the ``kid`` is read
from ``signing.kid`` next to it, so a rotation needs no change to the connection.

Rotation: :func:`generate_key` again. The new key signs from then on; the old one stays in
``jwks.json`` (assertions already signed, and tokens asked for by a process that still holds
the old key, keep verifying) until :func:`remove_key` drops it. Files are replaced
atomically. ``kid`` is the key's RFC 7638 JWK thumbprint (SHA-256, base64url).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from dipro_fhir.core.errors import ConfigError

Algorithm = Literal["RS384", "ES384"]
JWKS_FILE = "jwks.json"
SIGNING_KEY = "signing.pem"
SIGNING_KID = "signing.kid"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A generated key: its ``kid``, algorithm and private key file."""

    kid: str
    algorithm: Algorithm
    private_key_path: Path


def _write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        os.fchmod(handle, mode)
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _public_jwk(private_key: Any, algorithm: Algorithm) -> dict[str, Any]:
    public = private_key.public_key()
    if algorithm == "RS384":
        jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public))
    else:
        jwk = json.loads(ECAlgorithm.to_jwk(public))
    return jwk


def thumbprint(jwk: dict[str, Any]) -> str:
    """Return the RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    import base64
    import hashlib

    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def read_jwks(folder: Path) -> dict[str, Any]:
    """Return the folder's published JWK Set (``{"keys": []}`` when none yet)."""
    path = Path(folder) / JWKS_FILE
    if not path.exists():
        return {"keys": []}
    jwks: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return jwks


def signing_kid(folder: Path) -> str | None:
    """Return the ``kid`` of the key that signs now, or ``None`` before the first key."""
    path = Path(folder) / SIGNING_KID
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def generate_key(folder: Path, algorithm: Algorithm = "RS384") -> KeyInfo:
    """Generate a key pair, publish its public key and make it the signing key.

    Args:
        folder: The key folder (created with mode 0700 when missing).
        algorithm: ``RS384`` (RSA 2048) or ``ES384`` (P-384), the SMART algorithms.

    Returns:
        The new key's ``kid``, algorithm and private key file.
    """
    if algorithm not in ("RS384", "ES384"):
        raise ConfigError("SMART Backend Services keys are RS384 or ES384")
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    jwk = _public_jwk(private_key, algorithm)
    kid = thumbprint(jwk)
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig", "key_ops": ["verify"]})
    key_path = folder / f"{kid}.pem"
    _write_atomic(key_path, pem)
    jwks = read_jwks(folder)
    jwks["keys"] = [k for k in jwks["keys"] if k.get("kid") != kid] + [jwk]
    _write_atomic(folder / JWKS_FILE, (json.dumps(jwks, indent=2) + "\n").encode(), 0o644)
    # The key first, then its kid: a reader between the two sees a new key with the old
    # kid for an instant; the token server then refuses once and the client asks again.
    _write_atomic(folder / SIGNING_KEY, pem)
    _write_atomic(folder / SIGNING_KID, (kid + "\n").encode(), 0o644)
    return KeyInfo(kid, algorithm, key_path)


def remove_key(folder: Path, kid: str) -> None:
    """Stop publishing a key and delete its private key file.

    Raises:
        ConfigError: The key signs now (rotate first), or the folder has no such key.
    """
    folder = Path(folder)
    if kid == signing_kid(folder):
        raise ConfigError(f"key {kid} signs now: generate a new key before removing it")
    jwks = read_jwks(folder)
    kept = [k for k in jwks["keys"] if k.get("kid") != kid]
    if len(kept) == len(jwks["keys"]):
        raise ConfigError(f"no published key {kid} in {folder}")
    _write_atomic(folder / JWKS_FILE, (json.dumps({"keys": kept}, indent=2) + "\n").encode(), 0o644)
    (folder / f"{kid}.pem").unlink(missing_ok=True)


def key_id_for(private_key_path: Path) -> str | None:
    """The ``kid`` of a private key file from this folder layout (``signing.kid`` for
    ``signing.pem``, the file name for ``<kid>.pem``), or ``None`` for other files."""
    path = Path(private_key_path)
    if path.name == SIGNING_KEY:
        return signing_kid(path.parent)
    if (path.parent / JWKS_FILE).exists():
        return path.stem
    return None


def algorithm_for(private_key_pem: bytes) -> Algorithm:
    """``ES384`` for an EC private key, ``RS384`` for RSA."""
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ES384"
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    raise ConfigError("the SMART private key is neither RSA nor EC")


def serve_jwks(
    folder: Path, host: str = "127.0.0.1", port: int = 0, path: str = "/jwks.json"
) -> ThreadingHTTPServer:
    """Serve the folder's JWK Set at ``http://host:port{path}`` from a background thread.

    The file is read on every request, so a rotation shows at once. Only ``GET {path}`` is
    answered (200, ``application/jwk-set+json``); anything else is 404. Call ``shutdown()``
    and ``server_close()`` on the returned server to stop it.
    """
    folder = Path(folder)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != path:
                self.send_error(404)
                return
            body = json.dumps(read_jwks(folder)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/jwk-set+json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    return server
