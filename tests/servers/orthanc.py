"""Session fixtures: a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) on loopback.

The launcher is the product's (:mod:`dipro_fhir.sandbox.servers.orthanc`). ``orthanc`` is
open; ``orthanc_auth`` is a second server with HTTP Basic auth (user ``dipro``, password
``s3cret``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dipro_fhir.sandbox.servers.orthanc import (
    AUTH_PASSWORD,
    AUTH_USER,
    OrthancServer,
    start_orthanc,
    stop_orthanc,
)

__all__ = [
    "AUTH_PASSWORD",
    "AUTH_USER",
    "OrthancServer",
    "orthanc",
    "orthanc_auth",
    "orthanc_clean",
]


def _start(workdir: Path, *, with_auth: bool) -> OrthancServer:
    try:
        return start_orthanc(workdir, with_auth=with_auth)
    except RuntimeError as error:
        pytest.fail(f"{error} (scripts/install.sh installs orthanc and orthanc-dicomweb)")


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """An open Orthanc with DICOMweb, shared by the session; tests reset what they need."""
    workdir = tmp_path_factory.mktemp("orthanc")
    server = _start(workdir, with_auth=False)
    yield server
    stop_orthanc(server, workdir)


@pytest.fixture(scope="session")
def orthanc_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A second Orthanc that requires HTTP Basic auth."""
    workdir = tmp_path_factory.mktemp("orthanc-auth")
    server = _start(workdir, with_auth=True)
    yield server
    stop_orthanc(server, workdir)


@pytest.fixture
def orthanc_clean(orthanc: OrthancServer) -> OrthancServer:
    """The session Orthanc, emptied."""
    orthanc.reset()
    return orthanc
