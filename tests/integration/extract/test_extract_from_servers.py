"""A synthetic cohort loaded into the real FHIR server and Orthanc maps back to its truth.

The cohort goes in through FHIR transactions and STOW-RS, comes out through FHIR search
(paged: the page size is far below the number of Observations per patient) and QIDO/WADO-RS,
and every mapped hourly value and every CXR hour must equal the generator's ground truth.
The as-of time lies in the middle of each stay, so later data exists on the servers and must
not appear.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.timeline import EncounterId, PatientId, PatientTimeline
from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.source import HttpFhirSource
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.imaging.sources import DicomWebImageSource
from dipro_fhir.run.extract import ExtractOptions, extract_patient
from dipro_fhir.synth import GroundTruth, generate_cohort
from dipro_fhir.synth.load import load_into_servers
from tests.servers.orthanc import OrthancServer

START = datetime(2026, 10, 1, tzinfo=UTC)
REFERENCE = datetime(2026, 10, 20, tzinfo=UTC)
N_PATIENTS = 20
PAGE_SIZE = 100


@pytest.fixture(scope="module")
def loaded(
    fhir_server: object, orthanc: OrthancServer
) -> Iterator[tuple[str, str, list[GroundTruth]]]:
    base_url = fhir_server.base_url  # type: ignore[attr-defined]
    fhir_server.reset()  # type: ignore[attr-defined]
    orthanc.reset()
    patients = list(
        generate_cohort(N_PATIENTS, seed=11, start=START, reference_time=REFERENCE, id_prefix="ext")
    )
    with FhirClient(base_url) as client:
        report = load_into_servers(
            patients, client, orthanc.dicomweb_url, image_size=(256, 256), batch_size=400
        )
    assert report.count("Patient") == N_PATIENTS
    yield base_url, orthanc.dicomweb_url, [p.truth for p in patients]
    fhir_server.reset()  # type: ignore[attr-defined]
    orthanc.reset()


def _mid_stay(truth: GroundTruth) -> datetime:
    """An as-of time in the middle of the stay (whole minutes), before the reference time."""
    end = min(truth.discharged, REFERENCE)
    middle = truth.admitted + (end - truth.admitted) * 0.6
    return middle.replace(second=0, microsecond=0)


def _extract(
    base_url: str, dicomweb_url: str, truth: GroundTruth, as_of: datetime
) -> PatientTimeline:
    options = ExtractOptions(
        window_hours=48,
        crop_size=32,
        max_cxrs=6,
        locator=GeometricRegionLocator(),
        site_tz=UTC,
        # Loaded today: lastUpdated is the load time, so availability is read from `issued`.
        availability="issued",
    )
    with FhirClient(base_url, page_size=PAGE_SIZE) as client:
        result = extract_patient(
            HttpFhirSource(client),
            DicomWebImageSource(DicomWebClient(dicomweb_url)),
            PatientId(truth.patient_id),
            EncounterId(truth.encounter_id),
            as_of,
            options,
        )
    assert not isinstance(result, PatientFailure), result
    return result


def test_mapped_values_and_cxr_hours_equal_ground_truth(
    loaded: tuple[str, str, list[GroundTruth]],
) -> None:
    base_url, dicomweb_url, truths = loaded
    compared_values = compared_images = max_observations = dropped_films = 0
    for truth in truths:
        as_of = _mid_stay(truth)
        timeline = _extract(base_url, dicomweb_url, truth, as_of)
        values, mask = truth.ehr_grid(as_of)
        np.testing.assert_array_equal(timeline.ehr_mask, mask, err_msg=truth.patient_id)
        np.testing.assert_allclose(
            timeline.ehr_values[mask], values[mask], rtol=1e-4, atol=1e-3, err_msg=truth.patient_id
        )
        compared_values += int(mask.sum())
        used = sum(r.resource_type == "Observation" for r in timeline.provenance)
        max_observations = max(max_observations, used)
        # A film whose region placement fails quality control as a whole is not used, and
        # says so; the rest are the latest six films before as-of.
        dropped = {
            str(i.resource).removeprefix("instance/")
            for i in timeline.issues
            if i.code == "regions-qc-film"
        }
        dropped_films += len(dropped)
        usable = [e for e in truth.images_before(as_of) if e.instance_uid not in dropped]
        expected = usable[-6:]
        assert [i.instance_uid for i in timeline.images] == [e.instance_uid for e in expected]
        start = as_of - timedelta(hours=48)
        for image, known in zip(timeline.images, expected, strict=True):
            hours = (known.acquired - start) / timedelta(hours=1)
            assert image.hours_since_window_start == pytest.approx(hours, abs=1e-6)
            assert image.crops.shape == (10, 1, 32, 32)
        compared_images += len(expected)
    # The comparison must have had substance: many values and several CXRs per patient,
    # and Observation searches that spanned several pages.
    assert compared_values > 20 * N_PATIENTS
    assert compared_images >= N_PATIENTS
    # Measured: QC leaves out 15 of 54 synthetic films (their left base reads high: issue 11
    # is open); each is recorded. More than half would be a regression.
    assert dropped_films <= compared_images
    assert max_observations > 2 * PAGE_SIZE


def test_as_of_in_the_middle_of_a_stay_excludes_later_data(
    loaded: tuple[str, str, list[GroundTruth]],
) -> None:
    base_url, dicomweb_url, truths = loaded
    later_values = later_images = 0
    for truth in truths[:5]:
        as_of = _mid_stay(truth)
        timeline = _extract(base_url, dicomweb_url, truth, as_of)
        later_values += sum(v.effective >= as_of for v in truth.values)
        later_images += sum(i.acquired >= as_of for i in truth.images)
        assert all(i.acquired < as_of for i in timeline.images)
        used = {r.id for r in timeline.provenance if r.resource_type == "Observation"}
        late = {
            v.observation_id for v in truth.values if v.effective >= as_of or v.available > as_of
        }
        assert not used & late
    # Later data existed on the servers, so the exclusion was really exercised.
    assert later_values > 0
    assert later_images > 0
