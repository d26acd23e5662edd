"""A small synthetic cohort shared by the synth unit tests (generated once per module)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dipro_fhir.synth import SyntheticPatient, generate_cohort

START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cohort() -> list[SyntheticPatient]:
    """50 patients, all discharged."""
    return list(generate_cohort(50, seed=7, start=START))
