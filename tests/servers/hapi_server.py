"""pytest fixtures for the reference FHIR server of the tests: HAPI FHIR JPA, on loopback.

The server and its launcher are the product's (:mod:`dipro_fhir.sandbox.servers.hapi_server`,
also the sandbox's FHIR server). One JVM per pytest session (per xdist worker);
``hapi_base_url`` empties it before each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dipro_fhir.sandbox.servers.hapi_server import HapiServer, start_hapi_server

__all__ = ["HapiServer", "hapi_base_url", "hapi_server"]


@pytest.fixture(scope="session")
def hapi_server() -> Iterator[HapiServer]:
    """The HAPI FHIR server process for the whole session (see module docstring)."""
    server = start_hapi_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hapi_base_url(hapi_server: HapiServer) -> str:
    """The base URL of the emptied HAPI server: each test starts from an empty store."""
    hapi_server.reset()
    return hapi_server.base_url
