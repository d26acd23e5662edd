"""Shared pytest configuration.

Each real test server has its own fixture module under ``tests/servers``; they start once per
session on loopback and stop at the end. Hypothesis gets a derandomised ``ci`` profile.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "tests.servers.fhir_server",
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
