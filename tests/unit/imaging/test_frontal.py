"""Choosing the frontal film of a study and dating it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from dipro_fhir.imaging.frontal import ImageCandidate, acquisition_time, select_frontal

DATA = Path(__file__).parents[2] / "data" / "dicom"
T = datetime(2025, 1, 1, tzinfo=UTC)


def _c(uid: str, view: str = "", **kw: object) -> ImageCandidate:
    return ImageCandidate(
        study_uid="1", series_uid="1.1", instance_uid=uid, view_position=view, **kw
    )  # type: ignore[arg-type]


def test_pa_beats_ap_and_lateral_is_never_chosen() -> None:
    choice = select_frontal([_c("1.1", "LATERAL"), _c("1.2", "AP", acquired=T), _c("1.3", "PA")])
    assert choice.candidate is not None
    assert choice.candidate.instance_uid == "1.3"
    assert choice.reason == "view-position-pa"


def test_only_laterals_and_decubitus_give_no_frontal() -> None:
    choice = select_frontal([_c("1", "LL"), _c("2", "RL"), _c("3", "RLD"), _c("4", "LATERAL")])
    assert choice.candidate is None
    assert choice.reason == "no-frontal"
    assert select_frontal([]).reason == "no-candidates"


def test_latest_of_equal_views_wins() -> None:
    choice = select_frontal(
        [_c("1.9", "AP", acquired=T), _c("1.2", "AP", acquired=T + timedelta(hours=1))]
    )
    assert choice.candidate is not None
    assert choice.candidate.instance_uid == "1.2"


def test_view_code_and_description_are_used_when_view_position_is_empty() -> None:
    by_code = select_frontal(
        [_c("1", view_code_meaning="postero-anterior"), _c("2", series_description="Chest")]
    )
    assert by_code.candidate is not None
    assert by_code.reason == "view-code"
    by_text = select_frontal(
        [_c("1", series_description="THORAX LAT"), _c("2", series_description="Chest PA")]
    )
    assert by_text.candidate is not None
    assert by_text.candidate.instance_uid == "2"
    assert by_text.reason == "series-description"


def test_aspect_fallback_only_without_any_view_information() -> None:
    square = _c("1", rows=2000, columns=1800)
    wide = _c("2", rows=1000, columns=2400)
    choice = select_frontal([wide, square])
    assert choice.candidate == square
    assert choice.reason == "aspect-fallback"


def test_content_time_with_timezone_offset_dates_the_real_cr() -> None:
    ds = pydicom.dcmread(DATA / "RG1_J2KI.dcm", stop_before_pixels=True)
    # ContentDate/Time 19950926 125130, TimezoneOffsetFromUTC -0400
    assert acquisition_time(ds) == datetime(1995, 9, 26, 16, 51, 30, tzinfo=UTC)


def test_acquisition_datetime_offset_beats_site_zone_and_fallbacks() -> None:
    ds = Dataset()
    ds.AcquisitionDateTime = "20250301101500+0100"
    ds.StudyDate, ds.StudyTime = "20250101", "000000"
    assert acquisition_time(ds, timezone(timedelta(hours=5))) == datetime(
        2025, 3, 1, 9, 15, tzinfo=UTC
    )


def test_naive_times_use_the_site_zone_and_study_date_is_last_resort() -> None:
    ds = Dataset()
    ds.StudyDate, ds.StudyTime = "20250101", "1030"
    assert acquisition_time(ds, timezone(timedelta(hours=-5))) == datetime(
        2025, 1, 1, 15, 30, tzinfo=UTC
    )
    assert acquisition_time(Dataset()) is None
