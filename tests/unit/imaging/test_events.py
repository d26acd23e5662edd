"""From DICOM objects and folders to ImageEvents and issues."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dipro_fhir.core.timeline import ResourceRef
from dipro_fhir.imaging.events import fetch_image_events, image_event_from_dataset
from dipro_fhir.imaging.sources import FolderImageSource
from tests.unit.imaging.cohort import T0, StudySpec, build_cohort

DATA = Path(__file__).parents[2] / "data" / "dicom"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StudySpec]]:
    folder = tmp_path_factory.mktemp("cohort")
    return folder, build_cohort(folder, patients=2, size=256)


def test_event_carries_time_uids_and_full_region_mask(cohort: tuple[Path, list[StudySpec]]) -> None:
    spec = cohort[1][1]
    assert spec.frontal is not None
    ref = ResourceRef("ImagingStudy", "is-1")
    event, issues = image_event_from_dataset(
        spec.frontal, window_start=T0, crop_size=32, imaging_study_ref=ref
    )
    assert issues == []
    assert event is not None
    assert event.instance_uid == str(spec.frontal.SOPInstanceUID)
    assert event.acquired == T0 + timedelta(hours=20)
    assert event.hours_since_window_start == pytest.approx(20.0)
    assert event.crops.shape == (10, 1, 32, 32)
    assert event.region_mask.all()
    assert event.view_position == "AP"
    assert event.imaging_study == ref


def test_real_cr_with_zero_pixel_spacing_maps_to_an_event() -> None:
    ds = pydicom.dcmread(DATA / "RG1_J2KI.dcm")
    event, issues = image_event_from_dataset(ds, window_start=T0, crop_size=32)
    assert event is not None
    assert issues == []
    assert event.region_mask.all()
    assert event.hours_since_window_start < 0  # 1995 film, before the window


def test_garbage_pixels_become_a_corrupt_dicom_issue(cohort: tuple[Path, list[StudySpec]]) -> None:
    ds = pydicom.dcmread(cohort[0] / "1-frontal.dcm")  # J2K
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([b"\x00garbage" * 100])
    event, issues = image_event_from_dataset(ds, window_start=T0)
    assert event is None
    assert [i.code for i in issues] == ["corrupt-dicom"]
    assert issues[0].resource == f"instance/{ds.SOPInstanceUID}"


def test_truncated_file_in_a_folder_is_an_issue_not_a_crash(
    cohort: tuple[Path, list[StudySpec]], tmp_path: Path
) -> None:
    raw = (cohort[0] / "0-frontal.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(raw[: len(raw) // 2])
    source = FolderImageSource(tmp_path)
    study = cohort[1][0].study_uid
    events, issues = fetch_image_events(source, study, window_start=T0)
    assert events == []
    assert [i.code for i in issues] == ["corrupt-dicom"]


def test_folder_study_without_frontal_and_unknown_study_are_issues(
    cohort: tuple[Path, list[StudySpec]], tmp_path: Path
) -> None:
    (tmp_path / "lat.dcm").write_bytes((cohort[0] / "0-lateral.dcm").read_bytes())
    source = FolderImageSource(tmp_path)
    _, no_frontal = fetch_image_events(source, cohort[1][0].study_uid, window_start=T0)
    assert [i.code for i in no_frontal] == ["no-frontal-image"]
    _, missing = fetch_image_events(source, "9.9.9", window_start=T0)
    assert [i.code for i in missing] == ["image-missing"]


def test_folder_source_indexes_patients_and_picks_frontals(
    cohort: tuple[Path, list[StudySpec]],
) -> None:
    folder, specs = cohort
    source = FolderImageSource(folder)
    assert source.studies_for_patient("synth-1") == sorted(s.study_uid for s in specs[:2])
    assert source.studies_for_patient("synth-1", modalities=("MR",)) == []
    for spec in specs:
        events, issues = fetch_image_events(source, spec.study_uid, window_start=T0, crop_size=16)
        assert issues == []
        assert [e.instance_uid for e in events] == [f"{spec.study_uid}.1.1"]
        assert np.isfinite(events[0].crops).all()
