"""Shared pytest configuration.

Each real test server has its own fixture module under ``tests/servers``; they start once per
session on loopback and stop at the end. HAPI FHIR is the reference FHIR server
(``fhir_server``, ``fhir_base_url``); Medplum's router is the second implementation
(``medplum_base_url``), and ``any_fhir_base_url`` runs a test on both where portability
matters. Hypothesis gets a derandomised ``ci`` profile.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from tests.servers.hapi_server import HapiServer

pytest_plugins = [
    "tests.servers.fhir_server",
    "tests.servers.hapi_server",
    "tests.servers.fault_proxy",
    "tests.servers.orthanc",
    "tests.servers.postgres",
]

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The tests' films are synthetic, drawn in the geometric locator's convention; the default
# locator (atlas) is tested on the real development films by name. Subprocesses (Airflow,
# the CLI) inherit this.
os.environ.setdefault("DIPRO_IMAGING__LOCATOR", "geometric")


@pytest.fixture(scope="session")
def fhir_server(hapi_server: HapiServer) -> HapiServer:
    """The reference FHIR server of the tests: HAPI FHIR JPA (dipro_fhir/sandbox/servers/hapi)."""
    return hapi_server


@pytest.fixture
def fhir_base_url(hapi_base_url: str) -> str:
    """The base URL of the emptied reference server (HAPI)."""
    return hapi_base_url


@pytest.fixture(params=["hapi", "medplum"])
def any_fhir_base_url(request: pytest.FixtureRequest) -> str:
    """An emptied FHIR server of each implementation, for tests where portability matters."""
    name = "hapi_base_url" if request.param == "hapi" else "medplum_base_url"
    return str(request.getfixturevalue(name))
