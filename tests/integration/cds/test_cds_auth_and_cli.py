"""Trusting CDS Clients (the EHR's signed JWT on every call) and ``dipro-fhir cds-hooks serve``
started as a process, both over real HTTP on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import sqlalchemy as sa

from dipro_fhir.cds.model_status import DeployedModelUse
from dipro_fhir.cds.service import SERVICE_ID, create_app
from dipro_fhir.core.settings import CdsSettings
from dipro_fhir.fhir.smart_keys import KeyInfo, generate_key, serve_jwks

from .conftest import Record, hook_call, serving

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
EHR = "https://ehr.hospital.test/"


@pytest.fixture
def ehr_key(tmp_path: Path) -> Iterator[tuple[KeyInfo, str]]:
    """The EHR's signing key and the URL of its JWK Set, served on loopback."""
    key = generate_key(tmp_path / "ehr-keys", "ES384")
    server = serve_jwks(tmp_path / "ehr-keys")
    try:
        yield key, f"http://127.0.0.1:{server.server_port}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def _token(key: KeyInfo, aud: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": EHR, "aud": aud, "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    headers = {"kid": key.kid, "typ": "JWT", **changes.pop("headers", {})}
    claims.update(changes)
    return jwt.encode(claims, key.private_key_path.read_bytes(), "ES384", headers=headers)


def test_with_a_trusted_ehr_every_call_needs_its_signed_jwt(
    engine: sa.Engine, checkpoint: Path, record: Record, ehr_key: tuple[KeyInfo, str]
) -> None:
    key, jwks = ehr_key
    record("pat-1", hours_ago=3)
    settings = CdsSettings(trusted_clients={EHR: jwks})
    with serving(create_app(engine, settings, DeployedModelUse(checkpoint))) as base:
        discovery, service = f"{base}/cds-services", f"{base}/cds-services/{SERVICE_ID}"

        def post(token: str | None) -> requests.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return requests.post(service, json=hook_call("pat-1"), headers=headers, timeout=30)

        assert requests.get(discovery, timeout=30).status_code == 401
        signed = {"Authorization": f"Bearer {_token(key, discovery)}"}
        assert requests.get(discovery, headers=signed, timeout=30).status_code == 200
        assert post(None).status_code == 401
        good = _token(key, service)
        answer = post(good)
        assert answer.status_code == 200
        assert len(answer.json()["cards"]) == 3
        assert "a replay" in post(good).json()["detail"]
        assert post(_token(key, discovery)).status_code == 401  # aud: another endpoint
        assert "not a trusted CDS Client" in post(_token(key, service, iss="https://x/")).text
        assert post(_token(key, service, exp=int(time.time()) - 600)).status_code == 401
        assert (
            post(_token(key, service, headers={"jku": "https://evil.test/jwks"})).status_code == 401
        )
        forged = jwt.encode(
            {"iss": EHR, "aud": service, "iat": 1, "exp": 2**40, "jti": "j"}, "s" * 32, "HS256"
        )
        assert "asymmetric" in post(forged).text
        other = generate_key(key.private_key_path.parent.parent / "other", "ES384")
        assert post(_token(other, service)).status_code == 401  # a kid the EHR never published


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_cli_serves_the_service_and_refuses_an_open_port_without_authentication(
    migrated_pg_url: str, checkpoint: Path, record: Record
) -> None:
    record("pat-cli", hours_ago=2)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "model")]),
        "DIPRO_STORE__URL": migrated_pg_url,
        "DIPRO_MODEL__CHECKPOINT": str(checkpoint),
        "DIPRO_CDS__UI_BASE": "https://airflow.test",
    }
    command = [sys.executable, "-m", "dipro_fhir.cli", "cds-hooks", "serve"]
    refused = subprocess.run(
        [*command, "--host", "0.0.0.0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert "without authentication: set DIPRO_CDS__TRUSTED_CLIENTS" in refused.stderr
    port = _free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                discovery = requests.get(f"{base}/cds-services", timeout=5)
                break
            except requests.ConnectionError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.2)
        assert discovery.json()["services"][0]["id"] == SERVICE_ID
        call = hook_call("pat-cli", prefetch={"resourceType": "Patient", "id": "pat-cli"})
        cards = requests.post(f"{base}/cds-services/{SERVICE_ID}", json=call, timeout=30).json()
        links = [link["url"] for link in cards["cards"][0]["links"]]
        assert links == ["https://airflow.test/dipro/patients/pat-cli"]  # no SMART URL set
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert f"CDS Hooks on 127.0.0.1:{port}" in output
    assert "pat-cli" not in output  # no patient id in the service's log
