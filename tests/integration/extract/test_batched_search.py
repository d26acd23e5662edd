"""Batched REST searches give the same timelines as the per-patient path, in far fewer
requests, and a server that refuses them gets the per-patient path (HAPI FHIR, real).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.timeline import PatientId
from dipro_fhir.fhir.batched import BatchedHttpFhirSource, prefetch_chunk
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.source import HttpFhirSource
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.imaging.sources import FolderImageSource
from dipro_fhir.run.extract import ExtractOptions, extract_patient
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import load_into_servers, write_files
from tests.timelines import fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AS_OF = datetime(2026, 11, 24, 2, tzinfo=UTC)
OPTIONS = ExtractOptions(
    window_hours=48, crop_size=32, max_cxrs=6, locator=GeometricRegionLocator(), site_tz=UTC,
    availability="issued",
)  # fmt: skip


class _NoImages:
    def store(self, datasets: Any) -> None:
        """The radiographs are read from a DICOM folder."""


@pytest.fixture(scope="module")
def world(hapi_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Five synthetic patients on HAPI; their radiographs in a folder."""
    hapi_server.reset()
    folder = tmp_path_factory.mktemp("batched")

    def cohort() -> Any:
        start = AS_OF - timedelta(days=4)
        return generate_cohort(
            5, seed=8, start=start, admission_span_days=3.5, reference_time=AS_OF, id_prefix="bat"
        )

    write_files(cohort(), folder, image_size=(96, 96))
    with FhirClient(hapi_server.base_url) as client:
        load_into_servers(cohort(), client, _NoImages(), dicomweb_base_url="http://x/dicom-web")
    ids = sorted(t.truth.patient_id for t in cohort())
    yield hapi_server.base_url, ids, FolderImageSource(folder / "dicom")
    hapi_server.reset()


def _timelines(source: HttpFhirSource, ids: list[str], images: Any) -> dict[str, Any]:
    prefetch_chunk(source, [*ids, "bat-missing"], AS_OF, 48)
    found: dict[str, Any] = {}
    for pid in [*ids, "bat-missing"]:
        result = extract_patient(source, images, PatientId(pid), None, AS_OF, OPTIONS)
        found[pid] = result.reason if isinstance(result, PatientFailure) else fingerprint(result)
    return found


def test_batched_searches_give_the_per_patient_timelines(world: Any, fault_proxy: Any) -> None:
    base_url, ids, images = world
    proxy = fault_proxy(base_url)
    with FhirClient(proxy.base_url, page_size=200) as client:
        per_patient = _timelines(HttpFhirSource(client), ids, images)
        one_by_one = len(proxy.requests)
        proxy.clear()
        batched_source = BatchedHttpFhirSource(client, page_size=1000)
        batched = _timelines(batched_source, ids, images)
        in_batches = len(proxy.requests)
        batched_searches = {t: proxy.count(rf"/{t}\?") for t in ("Encounter", "ImagingStudy")}

    assert batched_source.supported
    assert batched == per_patient
    assert per_patient["bat-missing"] == "not-found"
    assert sum(1 for v in per_patient.values() if isinstance(v, tuple)) == len(ids)
    # One search per type and chunk instead of one per patient; Observations come in pages
    # of HAPI's max_page_size (200), so they dominate what is left.
    assert batched_searches == {"Encounter": 1, "ImagingStudy": 1}
    assert in_batches < one_by_one, (in_batches, one_by_one)
    assert proxy.count(r"/Observation\?.*subject=Patient%2Fbat-") >= 1


def test_a_server_refusing_batched_searches_gets_the_per_patient_path(
    world: Any, fault_proxy: Any
) -> None:
    base_url, ids, images = world
    with FhirClient(base_url, page_size=200) as client:
        expected = _timelines(HttpFhirSource(client), ids, images)
    proxy = fault_proxy(base_url)
    proxy.inject("status", times=1, match=r"subject=Patient%2F[^&]*%2C", status=400)
    with FhirClient(proxy.base_url, page_size=200) as client:
        source = BatchedHttpFhirSource(client)
        found = _timelines(source, ids, images)
    assert not source.supported
    assert proxy.pending_faults() == 0
    assert found == expected


def test_auto_batches_where_the_capability_statement_lists_the_searches(world: Any) -> None:
    from dipro_fhir.core.settings import FhirSettings
    from dipro_fhir.fhir.batched import batched_search_support

    base_url, ids, _images = world
    with FhirClient(base_url, page_size=200) as client:
        statement = client.capabilities()
        assert batched_search_support(statement) is None  # HAPI lists them
        source = BatchedHttpFhirSource(client, check_server=True)
        assert prefetch_chunk(source, ids, AS_OF, 48)
        assert source.why_not is None
        # The same statement without Encounter's _include: per-patient searches.
        for rest in statement["rest"]:
            for resource in rest.get("resource", []):
                if resource.get("type") == "Encounter":
                    resource["searchInclude"] = []
        assert batched_search_support(statement) == (
            "CapabilityStatement lists no _include=Encounter:subject"
        )
    assert FhirSettings().batched_search == "auto"  # the measured best is the default
    assert FhirSettings(batched_search="true").batched_search == "on"  # type: ignore[arg-type]
    assert FhirSettings(batched_search=False).batched_search == "off"  # type: ignore[arg-type]
