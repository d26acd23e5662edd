"""The SMART Backend Services client assertion, checked with the public key (no server)."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dipro_fhir.fhir import SmartBackendAuth

TOKEN_URL = "https://auth.example.org/token"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_assertion_has_the_claims_backend_services_requires(algorithm: str) -> None:
    key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    auth = SmartBackendAuth(
        token_url=TOKEN_URL,
        client_id="dipro",
        private_key=_pem(key),
        key_id="k1",
        algorithm=algorithm,
        clock=lambda: 1_700_000_000.0,
    )
    first, second = auth.client_assertion(), auth.client_assertion()
    header = jwt.get_unverified_header(first)
    claims = jwt.decode(
        first,
        key.public_key(),
        algorithms=[algorithm],
        audience=TOKEN_URL,
        options={"verify_exp": False},
    )
    assert header["kid"] == "k1"
    assert header["alg"] == algorithm
    assert claims["iss"] == claims["sub"] == "dipro"
    assert 0 < claims["exp"] - 1_700_000_000 <= 300
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


def test_unsupported_algorithm_and_long_assertion_are_refused() -> None:
    with pytest.raises(ValueError, match="RS384"):
        SmartBackendAuth(
            token_url=TOKEN_URL, client_id="c", private_key="k", key_id="k", algorithm="HS256"
        )
    with pytest.raises(ValueError, match="lifetime"):
        SmartBackendAuth(
            token_url=TOKEN_URL,
            client_id="c",
            private_key="k",
            key_id="k",
            assertion_lifetime_s=600,
        )


def test_repr_never_shows_the_key() -> None:
    auth = SmartBackendAuth(token_url=TOKEN_URL, client_id="c", private_key="SECRETKEY", key_id="k")
    assert "SECRETKEY" not in repr(auth)
