"""``dipro-fhir smart keys`` against the test token server: a JWKS served from the key
folder authenticates; after a rotation both keys verify until the old one is removed; the
connection settings pick up the signing key and its kid."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from dipro_fhir.cli import main
from dipro_fhir.core.errors import AuthError, ConfigError
from dipro_fhir.core.settings import FhirSettings
from dipro_fhir.fhir import SmartBackendAuth, smart_keys
from dipro_fhir.run.connections import fhir_auth

from .auth_servers import TokenServer

pytestmark = pytest.mark.integration
CLIENT = "dipro-job"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, TokenServer]]:
    """A key folder, its JWKS served over HTTP, and a token server registered with that URL."""
    folder = tmp_path / "keys"
    folder.mkdir()
    server = smart_keys.serve_jwks(folder, port=0, path="/smart/jwks.json")
    url = f"http://127.0.0.1:{server.server_address[1]}/smart/jwks.json"
    token_server = TokenServer(CLIENT, jwks_url=url)
    yield folder, token_server
    token_server.close()
    server.shutdown()
    server.server_close()


def _auth(token_server: TokenServer, pem: bytes, kid: str) -> SmartBackendAuth:
    return SmartBackendAuth(
        token_url=token_server.url,
        client_id=CLIENT,
        private_key=pem,
        key_id=kid,
        algorithm=smart_keys.algorithm_for(pem),
    )


def test_jwks_from_the_command_authenticates_and_rotation_keeps_both_until_removed(
    served: tuple[Path, TokenServer], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, token_server = served
    assert main(["smart", "keys", "generate", "--dir", str(folder), "--alg", "ES384"]) == 0
    printed = json.loads(capsys.readouterr().out)
    first = smart_keys.signing_kid(folder)
    assert [k["kid"] for k in printed["keys"]] == [first]
    assert printed["keys"][0]["alg"] == "ES384"
    assert "d" not in printed["keys"][0]
    old_pem = (folder / f"{first}.pem").read_bytes()
    assert (folder / "signing.pem").read_bytes() == old_pem
    assert oct((folder / f"{first}.pem").stat().st_mode & 0o777) == "0o600"
    assert _auth(token_server, old_pem, str(first)).access_token() == "token-1"

    assert main(["smart", "keys", "rotate", "--dir", str(folder), "--alg", "RS384"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    second = smart_keys.signing_kid(folder)
    new_pem = (folder / "signing.pem").read_bytes()
    assert second != first
    assert [k["kid"] for k in rotated["keys"]] == [first, second]
    assert _auth(token_server, new_pem, str(second)).access_token() == "token-2"
    assert _auth(token_server, old_pem, str(first)).access_token() == "token-3"

    with pytest.raises(ConfigError, match="signs now"):
        smart_keys.remove_key(folder, str(second))
    assert main(["smart", "keys", "remove", "--dir", str(folder), f"--kid={first}"]) == 0
    assert [k["kid"] for k in json.loads(capsys.readouterr().out)["keys"]] == [second]
    with pytest.raises(AuthError):
        _auth(token_server, old_pem, str(first)).access_token()
    assert _auth(token_server, new_pem, str(second)).access_token() == "token-4"
    assert token_server.refusals == ["kid not in the registered JWKS"]


def test_connection_pointing_at_signing_pem_follows_rotation(
    served: tuple[Path, TokenServer],
) -> None:
    folder, token_server = served
    smart_keys.generate_key(folder, "ES384")
    settings = FhirSettings(
        base_url="http://unused.invalid/fhir",
        auth="smart",
        smart_client_id=CLIENT,
        smart_token_url=token_server.url,
        smart_private_key_path=folder / "signing.pem",
    )
    before = fhir_auth(settings)
    assert isinstance(before, SmartBackendAuth)
    assert before.algorithm == "ES384"
    assert before.access_token() == "token-1"
    smart_keys.generate_key(folder, "RS384")
    after = fhir_auth(settings)  # a new task builds its auth again: the new key, no edits
    assert isinstance(after, SmartBackendAuth)
    assert after.algorithm == "RS384"
    assert after.access_token() == "token-2"
    assert before.client_assertion() != after.client_assertion()


def test_serve_command_publishes_the_jwks_at_the_chosen_path(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    smart_keys.generate_key(folder, "RS384")
    command = [sys.executable, "-m", "dipro_fhir.cli", "smart", "keys", "serve"]
    process = subprocess.Popen(
        [*command, "--dir", str(folder), "--port", "0", "--path", "/org/jwks"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.rsplit(" ", 1)[1].strip()
        assert url.endswith("/org/jwks")
        body = requests.get(url, timeout=10).json()
        assert [k["kid"] for k in body["keys"]] == [smart_keys.signing_kid(folder)]
        assert requests.get(url.replace("/org/jwks", "/other"), timeout=10).status_code == 404
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_kid_beginning_with_a_dash_is_removed_through_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base64url thumbprint begins with '-' once in 64 keys; ``--kid=KID`` must take it."""
    folder = tmp_path / "keys"
    for _ in range(400):
        smart_keys.generate_key(folder, "ES384")
        kid = smart_keys.signing_kid(folder)
        if kid is not None and kid.startswith("-"):
            break
    else:
        pytest.fail("no kid beginning with '-' in 400 generated keys")
    smart_keys.generate_key(folder, "ES384")
    assert main(["smart", "keys", "remove", "--dir", str(folder), f"--kid={kid}"]) == 0
    kept = [k["kid"] for k in json.loads(capsys.readouterr().out)["keys"]]
    assert kid not in kept


def test_a_key_folder_that_does_not_exist_is_refused_not_published_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --dir must not print an empty JWK Set that a site would register."""
    missing = tmp_path / "kyes"
    for action in ("jwks", "serve", "remove"):
        assert main(["smart", "keys", action, "--dir", str(missing), "--kid=x"]) == 2
        assert "no key folder" in capsys.readouterr().err
    assert not missing.exists()
    empty = tmp_path / "keys"
    empty.mkdir()
    assert main(["smart", "keys", "jwks", "--dir", str(empty)]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out) == {"keys": []}
    assert "no key in" in printed.err
