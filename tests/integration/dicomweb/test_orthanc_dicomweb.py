"""DICOMweb client and image sources against a real Orthanc (STOW, QIDO, WADO)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests

from dipro_fhir.core.errors import AuthError, ResourceNotFound, SourceUnavailable
from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.fhir.retry import RetryPolicy
from dipro_fhir.imaging.events import fetch_image_events, frontal_candidates
from dipro_fhir.imaging.frontal import select_frontal
from dipro_fhir.imaging.sources import DicomWebImageSource, FolderImageSource
from tests.servers.orthanc import AUTH_PASSWORD, AUTH_USER, OrthancServer
from tests.unit.imaging.cohort import T0, StudySpec, build_cohort

pytestmark = pytest.mark.integration
FAST = RetryPolicy(max_attempts=3, backoff_s=0.01, max_backoff_s=0.02, jitter=0.0)


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StudySpec]]:
    folder = tmp_path_factory.mktemp("cohort")
    return folder, build_cohort(folder)


@pytest.fixture(scope="module")
def stored(
    orthanc: OrthancServer, cohort_dir: tuple[Path, list[StudySpec]]
) -> tuple[OrthancServer, list[StudySpec]]:
    orthanc.reset()
    client = DicomWebClient(orthanc.dicomweb_url, retry=FAST, timeout_s=30)
    for spec in cohort_dir[1]:
        assert spec.frontal is not None
        client.store([spec.frontal, spec.lateral])
    return orthanc, cohort_dir[1]


def _source(server: OrthancServer, session: requests.Session | None = None) -> DicomWebImageSource:
    return DicomWebImageSource(
        DicomWebClient(server.dicomweb_url, session=session, retry=FAST, timeout_s=30)
    )


def test_qido_lists_both_series_of_each_stored_study(
    stored: tuple[OrthancServer, list[StudySpec]],
) -> None:
    server, specs = stored
    source = _source(server)
    for spec in specs:
        series = source.series_for_study(spec.study_uid)
        assert [s.series_uid for s in series] == [f"{spec.study_uid}.1", f"{spec.study_uid}.2"]
        assert {s.modality for s in series} <= {"CR", "DX"}


def test_studies_for_patient_finds_cr_and_dx_studies_by_exact_match(
    stored: tuple[OrthancServer, list[StudySpec]],
) -> None:
    server, specs = stored
    source = _source(server)
    for pid in {s.patient_id for s in specs}:
        expected = sorted(s.study_uid for s in specs if s.patient_id == pid)
        assert source.studies_for_patient(pid) == expected
    assert source.studies_for_patient("synth-") == []  # no prefix matching


def test_client_side_view_filter_picks_the_frontal_instance(
    stored: tuple[OrthancServer, list[StudySpec]],
) -> None:
    server, specs = stored
    source = _source(server)
    for spec in specs:
        choice = select_frontal(frontal_candidates(source, spec.study_uid))
        assert choice.candidate is not None
        assert choice.candidate.instance_uid == f"{spec.study_uid}.1.1"
        assert choice.reason == f"view-position-{spec.frontal_view.lower()}"


def test_wado_retrieve_instance_round_trips_pixels_identically(
    stored: tuple[OrthancServer, list[StudySpec]],
) -> None:
    server, specs = stored
    source = _source(server)
    timings = []
    for spec in specs:
        assert spec.frontal is not None
        started = time.perf_counter()
        got = source.retrieve(spec.study_uid, f"{spec.study_uid}.1", f"{spec.study_uid}.1.1")
        timings.append(time.perf_counter() - started)
        assert got.file_meta.TransferSyntaxUID == spec.frontal.file_meta.TransferSyntaxUID
        np.testing.assert_array_equal(got.pixel_array, spec.frontal.pixel_array)
    print(f"WADO retrieve_instance 384x384: {1e3 * float(np.median(timings)):.1f} ms median")


def test_frame_retrieval_with_explicit_transfer_syntax_returns_raw_pixels(
    stored: tuple[OrthancServer, list[StudySpec]],
) -> None:
    server, specs = stored
    spec = next(s for s in specs if not s.frontal.file_meta.TransferSyntaxUID.is_compressed)  # type: ignore[union-attr]
    client = DicomWebClient(server.dicomweb_url, retry=FAST)
    frames = client.retrieve_frames(
        spec.study_uid, f"{spec.study_uid}.1", f"{spec.study_uid}.1.1", [1]
    )
    assert len(frames) == 1
    assert frames[0] == spec.frontal.pixel_array.astype("<u2").tobytes()  # type: ignore[union-attr]


def test_missing_study_becomes_image_missing_issue(
    stored: tuple[OrthancServer, list[StudySpec]],
) -> None:
    server, _ = stored
    source = _source(server)
    events, issues = fetch_image_events(source, "1.2.3.4.404", window_start=T0)
    assert events == []
    assert [i.code for i in issues] == ["image-missing"]
    with pytest.raises(ResourceNotFound):
        source.retrieve("1.2.3.4.404", "1.2.3.4.404.1", "1.2.3.4.404.1.1")


def test_folder_and_dicomweb_sources_give_the_same_events(
    stored: tuple[OrthancServer, list[StudySpec]], cohort_dir: tuple[Path, list[StudySpec]]
) -> None:
    server, specs = stored
    web, folder = _source(server), FolderImageSource(cohort_dir[0])
    for spec in specs:
        a_events, a_issues = fetch_image_events(web, spec.study_uid, window_start=T0, crop_size=64)
        b_events, b_issues = fetch_image_events(
            folder, spec.study_uid, window_start=T0, crop_size=64
        )
        assert a_issues == b_issues
        assert (
            [e.instance_uid for e in a_events]
            == [e.instance_uid for e in b_events]
            == [f"{spec.study_uid}.1.1"]
        )
        assert a_events[0].acquired == b_events[0].acquired
        np.testing.assert_array_equal(a_events[0].crops, b_events[0].crops)
        assert a_events[0].region_mask.all()


def test_transient_503_is_retried_then_succeeds(
    stored: tuple[OrthancServer, list[StudySpec]], fault_proxy
) -> None:  # type: ignore[no-untyped-def]
    server, specs = stored
    proxy = fault_proxy(server.base_url)
    proxy.inject("503", times=2, match=r"/dicom-web/studies/[^/]+/series")
    client = DicomWebClient(proxy.base_url + "/dicom-web", retry=FAST)
    assert len(client.search_series(study_uid=specs[0].study_uid)) == 2
    first_page = [r.fault for r in proxy.requests if r.query == "offset=0"]
    assert first_page == ["503", "503", None]  # two retries, then the real answer


def test_persistent_503_raises_source_unavailable(
    stored: tuple[OrthancServer, list[StudySpec]], fault_proxy
) -> None:  # type: ignore[no-untyped-def]
    server, specs = stored
    proxy = fault_proxy(server.base_url)
    proxy.inject("503", times=10, match=r"/series")
    client = DicomWebClient(proxy.base_url + "/dicom-web", retry=FAST)
    with pytest.raises(SourceUnavailable):
        client.search_series(study_uid=specs[0].study_uid)


def test_basic_auth_is_sent_and_refusal_is_auth_error(orthanc_auth: OrthancServer) -> None:
    good = DicomWebClient(
        orthanc_auth.dicomweb_url, username=AUTH_USER, password=AUTH_PASSWORD, retry=FAST
    )
    assert good.search_series(filters={"PatientID": "nobody", "Modality": "CR"}) == []
    bad = DicomWebClient(orthanc_auth.dicomweb_url, username=AUTH_USER, password="no", retry=FAST)
    with pytest.raises(AuthError):
        bad.search_series(filters={"PatientID": "nobody", "Modality": "CR"})


def test_logs_hold_no_uids_or_patient_ids(
    stored: tuple[OrthancServer, list[StudySpec]], caplog: pytest.LogCaptureFixture
) -> None:
    server, specs = stored
    source = _source(server)
    with caplog.at_level("DEBUG", logger="dipro_fhir"):
        source.studies_for_patient(specs[0].patient_id)
        fetch_image_events(source, specs[0].study_uid, window_start=T0, crop_size=16)
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("dipro_fhir")]
    assert ours  # something was logged
    for message in ours:
        assert specs[0].patient_id not in message
        assert "1.2.826" not in message
