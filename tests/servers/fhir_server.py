"""pytest fixtures for the second FHIR R4 server of the tests: Medplum's router, on loopback.

HAPI FHIR (:mod:`tests.servers.hapi_server`) is the reference server and owns the fixture
``fhir_base_url``; this one serves the portability subsets as ``medplum_base_url``.

The server is Medplum's FHIR router (npm ``@medplum/fhir-router``, pinned in
``tests/servers/fhir/package-lock.json``) with an in-memory store, served over HTTP by the
harness ``tests/servers/fhir/server.mjs``, which adds what a real server (HAPI FHIR) does:
``/metadata``, opaque ``Bundle.link`` paging, ``fullUrl``, validation on write, atomic
transactions, ``ETag``/``Location`` headers. It is not the project's own logic, so tests of our
FHIR client meet a server that can disagree with us.

FHIR base: ``http://127.0.0.1:<port>/fhir``. One process per pytest session (per xdist worker);
``medplum_base_url`` empties it before each test.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import requests

HARNESS_DIR = Path(__file__).resolve().parent / "fhir"
STARTUP_TIMEOUT_S = 30.0
NPM_TIMEOUT_S = 300.0


class FhirServer:
    """A running harness process.

    Attributes:
        base_url: FHIR base URL without a trailing slash, e.g. ``http://127.0.0.1:41234/fhir``.
        root_url: Server root (``base_url`` minus ``/fhir``), where ``/_harness/*`` lives.
    """

    def __init__(self, process: subprocess.Popen[bytes], base_url: str, stderr: IO[bytes]) -> None:
        self._process = process
        self._stderr = stderr
        self.base_url = base_url
        self.root_url = base_url.removesuffix("/fhir")

    def reset(self) -> None:
        """Empty the store and forget remembered searches (their page links then answer 410)."""
        response = requests.post(f"{self.root_url}/_harness/reset", timeout=10)
        if response.status_code != 204:
            raise RuntimeError(f"FHIR harness reset answered {response.status_code}")

    def stderr_text(self) -> str:
        """Return what the process wrote to stderr so far (for failure messages)."""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Stop the process: close its stdin (it exits on EOF), then terminate, then kill."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self._process.terminate()
            try:
                self._process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=3)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._stderr.close()


def ensure_node_modules(harness_dir: Path = HARNESS_DIR) -> None:
    """Run ``npm ci`` once if the pinned packages are missing.

    A file lock keeps parallel pytest workers from installing into the same folder at once.

    Raises:
        RuntimeError: npm is missing or the install failed.
    """
    marker = harness_dir / "node_modules" / "@medplum" / "fhir-router" / "package.json"
    if marker.exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH; run scripts/install.sh (needs Node 20+)")
    lock_path = Path(tempfile.gettempdir()) / "dipro-fhir-harness-npm.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=harness_dir,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"npm ci failed in {harness_dir}:\n{result.stderr[-2000:]}")


def _read_ready_line(stream: IO[bytes], timeout_s: float) -> str:
    """Read the harness's first stdout line (its JSON ready message) within ``timeout_s``."""
    lines: list[bytes] = []

    def read() -> None:
        lines.append(stream.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not lines or not lines[0]:
        return ""
    return lines[0].decode("utf-8")


def start_fhir_server(harness_dir: Path = HARNESS_DIR) -> FhirServer:
    """Start the harness on a free loopback port and wait until ``/metadata`` answers.

    Raises:
        RuntimeError: node is missing, or the server did not become ready in time.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not on PATH; run scripts/install.sh (needs Node 20+)")
    ensure_node_modules(harness_dir)
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed in stop()
    # Node 20 lacks a global WebSocket, which @medplum/core references at import.
    process = subprocess.Popen(
        [node, "--experimental-websocket", "--no-warnings", "server.mjs", "--port", "0"],
        cwd=harness_dir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    assert process.stdout is not None
    line = _read_ready_line(process.stdout, STARTUP_TIMEOUT_S)
    server = FhirServer(process, json.loads(line)["base_url"] if line else "", stderr)
    if not line:
        message = server.stderr_text()
        server.stop()
        raise RuntimeError(f"FHIR harness did not start:\n{message[-3000:]}")
    _wait_for_metadata(server)
    return server


def _wait_for_metadata(server: FhirServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            if requests.get(f"{server.base_url}/metadata", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            message = server.stderr_text()
            server.stop()
            raise RuntimeError(f"FHIR harness /metadata never answered:\n{message[-3000:]}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def medplum_server() -> Iterator[FhirServer]:
    """The Medplum harness process for the whole session (see module docstring)."""
    server = start_fhir_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def medplum_base_url(medplum_server: FhirServer) -> str:
    """The base URL of the emptied Medplum harness: each test starts from a clean store."""
    medplum_server.reset()
    return medplum_server.base_url
