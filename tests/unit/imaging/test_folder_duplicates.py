"""Two files of one SOP Instance UID in a folder: a recorded problem, a documented choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from dipro_fhir.imaging.encode import to_dicom, write_dicom
from dipro_fhir.imaging.events import fetch_image_events
from dipro_fhir.imaging.sources import FolderImageSource
from dipro_fhir.synth.radiograph import random_anatomy, render_chest

T0 = datetime(2026, 2, 1, 8, tzinfo=UTC)
STUDY, SERIES, INSTANCE = generate_uid(), generate_uid(), generate_uid()


def _film(fill: float) -> object:
    image = np.full((96, 80), fill)
    image[20:80, 10:70] = 1.0 - fill  # something to look at
    return _dicom(image)


def _chest() -> object:
    """A synthetic chest film whose regions pass quality control (so an event comes out)."""
    return _dicom(render_chest(3, random_anatomy(np.random.default_rng(3)), {}, size=(192, 192)))


def _dicom(image: np.ndarray) -> object:
    return to_dicom(
        image,
        patient_id="p1",
        patient_name="Test^Duplicate",
        birth_date=None,
        sex="O",
        study_uid=STUDY,
        series_uid=SERIES,
        instance_uid=INSTANCE,
        acquired=T0,
        view_position="AP",
    )


@pytest.mark.parametrize("written_first", ["z-copy", "a-original"])
def test_the_first_file_by_path_is_served_and_the_duplicate_recorded(
    tmp_path: Path, written_first: str
) -> None:
    names = {"a-original": 0.2, "z-copy": 0.9}
    order = [written_first, *(n for n in names if n != written_first)]
    for name in order:  # the file system's listing order does not matter
        write_dicom(_film(names[name]), tmp_path / name / "film.dcm")
    source = FolderImageSource(tmp_path)

    (candidate,) = [c for s in source.series_for_study(STUDY) for c in
                    source.instances_for_series(STUDY, s.series_uid)]  # fmt: skip
    assert candidate.instance_uid == INSTANCE
    served = source.retrieve(STUDY, SERIES, INSTANCE)
    assert served.filename.endswith("a-original/film.dcm")
    (problem,) = source.study_problems(STUDY)
    assert (problem.code, problem.resource) == ("duplicate-sop-instance", f"instance/{INSTANCE}")
    assert "2 files" in problem.detail


def test_the_duplicate_is_a_problem_of_the_patient_whose_study_it_is(tmp_path: Path) -> None:
    write_dicom(_chest(), tmp_path / "a" / "film.dcm")
    write_dicom(_chest(), tmp_path / "b" / "film.dcm")
    events, issues = fetch_image_events(
        FolderImageSource(tmp_path), STUDY, window_start=T0 - timedelta(hours=1), crop_size=16
    )
    assert len(events) == 1
    assert "duplicate-sop-instance" in [i.code for i in issues]


def test_a_folder_without_duplicates_reports_nothing(tmp_path: Path) -> None:
    write_dicom(_film(0.2), tmp_path / "a" / "film.dcm")
    assert FolderImageSource(tmp_path).study_problems(STUDY) == []
