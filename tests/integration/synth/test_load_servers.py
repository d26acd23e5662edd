"""Loading a synthetic cohort into the real FHIR server and Orthanc."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import requests
from dicomweb_client.api import DICOMwebClient

from dipro_fhir.cli.main import main as cli_main
from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.fhir import to_resources
from dipro_fhir.synth.load import RESOURCE_TYPES, load_into_servers
from tests.servers.orthanc import AUTH_PASSWORD, AUTH_USER, OrthancServer

pytestmark = pytest.mark.integration

START = datetime(2026, 5, 1, tzinfo=UTC)
N_PATIENTS = 20


def test_loaded_counts_on_the_servers_equal_what_was_generated(
    fhir_base_url: str, orthanc_clean: OrthancServer
) -> None:
    patients = list(generate_cohort(N_PATIENTS, seed=4, start=START))
    generated = Counter(r["resourceType"] for p in patients for r in to_resources(p))
    generated["Endpoint"] += 1
    instances = sum(len(s.images) for p in patients for s in p.studies)
    with FhirClient(fhir_base_url) as client:
        report = load_into_servers(
            patients,
            client,
            DicomWebClient(orthanc_clean.dicomweb_url),
            dicomweb_base_url=orthanc_clean.dicomweb_url,
            batch_size=1000,
            image_size=(64, 64),
        )
        assert report.patients == N_PATIENTS
        assert report.instances == instances
        for resource_type in RESOURCE_TYPES:
            assert report.count(resource_type) == generated[resource_type]
            assert client.count(resource_type, {}) == generated[resource_type], resource_type
        died = sum(p.truth.mortality for p in patients)
        assert client.count("Patient", {"deceased": "true"}) == died
    stored = DICOMwebClient(orthanc_clean.dicomweb_url).search_for_instances(get_remaining=True)
    assert len(stored) == instances
    uids = {item["00080018"]["Value"][0] for item in stored}
    assert uids == {i.instance_uid for p in patients for s in p.studies for i in s.images}


def test_loading_twice_changes_no_counts(fhir_base_url: str, orthanc_clean: OrthancServer) -> None:
    patients = list(generate_cohort(2, seed=8, start=START))
    with FhirClient(fhir_base_url) as client:
        for _ in range(2):
            load_into_servers(patients, client, orthanc_clean.dicomweb_url, image_size=(64, 64))
        expected = sum(
            1 for p in patients for r in to_resources(p) if r["resourceType"] == "Observation"
        )
        assert client.count("Observation", {}) == expected
        assert client.count("Patient", {}) == 2
    stored = DICOMwebClient(orthanc_clean.dicomweb_url).search_for_instances(get_remaining=True)
    assert len(stored) == sum(len(s.images) for p in patients for s in p.studies)


def test_synth_load_command_sends_the_configured_dicomweb_basic_auth(
    fhir_base_url: str, orthanc_auth: OrthancServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``dipro-fhir synth load`` against an Orthanc that wants Basic auth, as in the compose
    stack: STOW carries the credentials of DIPRO_DICOMWEB__* (it was refused with 401)."""
    for name, value in {
        "DIPRO_FHIR__BASE_URL": fhir_base_url,
        "DIPRO_DICOMWEB__BASE_URL": orthanc_auth.dicomweb_url,
        "DIPRO_DICOMWEB__AUTH": "basic",
        "DIPRO_DICOMWEB__USERNAME": AUTH_USER,
        "DIPRO_DICOMWEB__PASSWORD": AUTH_PASSWORD,
    }.items():
        monkeypatch.setenv(name, value)
    with_auth = DICOMwebClient(
        orthanc_auth.dicomweb_url, session=_basic_session(AUTH_USER, AUTH_PASSWORD)
    )
    before = len(with_auth.search_for_instances(get_remaining=True))

    reference = datetime(2026, 5, 15, tzinfo=UTC)
    argv = ["--quiet", "synth", "load", "--patients", "2", "--seed", "11"]
    assert cli_main([*argv, "--reference-time", reference.isoformat(), "--span-days", "14"]) == 0

    start = reference - timedelta(days=14)
    patients = list(generate_cohort(2, seed=11, start=start, reference_time=reference))
    stored = with_auth.search_for_instances(get_remaining=True)
    assert len(stored) - before == sum(len(s.images) for p in patients for s in p.studies) > 0
    with FhirClient(fhir_base_url) as client:
        assert client.count("Patient", {}) == 2


def _basic_session(user: str, password: str) -> requests.Session:
    session = requests.Session()
    session.auth = (user, password)
    return session
