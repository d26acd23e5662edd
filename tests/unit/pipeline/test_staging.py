"""The staging format round-trips timelines exactly and never leaves half a file."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from dipro_fhir.core.staging import load_timelines, remove_run, run_folder, save_timelines
from dipro_fhir.core.timeline import (
    EncounterId,
    ImageEvent,
    MappingIssue,
    PatientId,
    PatientTimeline,
    ResourceRef,
)


def _timeline(seed: int, n_images: int) -> PatientTimeline:
    rng = np.random.default_rng(seed)
    as_of = datetime(2026, 11, 24, 6, tzinfo=UTC)
    start = as_of - timedelta(hours=48)
    values = rng.normal(size=(48, 38)).astype(np.float32)
    mask = rng.random((48, 38)) < 0.3
    values[~mask] = np.nan
    images = tuple(
        ImageEvent(
            study_uid=f"1.2.3.{seed}.{j}",
            series_uid=f"1.2.3.{seed}.{j}.1",
            instance_uid=f"1.2.3.{seed}.{j}.1.1",
            acquired=start + timedelta(hours=10 * j),
            hours_since_window_start=10.0 * j,
            crops=rng.random((10, 1, 16, 16)).astype(np.float32),
            region_mask=rng.random(10) < 0.9,
            view_position="PA",
            imaging_study=ResourceRef("ImagingStudy", f"is-{seed}-{j}", "1"),
        )
        for j in range(n_images)
    )
    return PatientTimeline(
        patient_id=PatientId(f"pat-{seed}"),
        encounter_id=EncounterId(f"enc-{seed}") if seed % 2 else None,
        as_of=as_of,
        window_start=start,
        ehr_values=values,
        ehr_mask=mask,
        ehr_hours=np.arange(48, dtype=np.float32),
        demographics=rng.normal(size=17).astype(np.float32),
        images=images,
        provenance=(ResourceRef("Observation", f"o-{seed}", "2"),),
        issues=(MappingIssue("unknown-unit", f"Observation/x{seed}", "unit 'foo'"),),
        stay_start=start - timedelta(hours=seed) if seed % 2 else None,
    )


@pytest.mark.parametrize("remote", [False, True], ids=["local-folder", "fsspec-url"])
def test_timelines_round_trip_exactly(tmp_path: Path, remote: bool) -> None:
    originals = [_timeline(seed, n) for seed, n in [(1, 0), (2, 1), (3, 4)]]
    root = f"memory://staging-{tmp_path.name}" if remote else str(tmp_path)
    path = save_timelines(f"{run_folder(root, 'run-1')}/chunk-0000.npz", originals)
    loaded = load_timelines(path)
    assert len(loaded) == len(originals)
    for a, b in zip(originals, loaded, strict=True):
        assert (a.patient_id, a.encounter_id, a.as_of, a.window_start) == (
            b.patient_id,
            b.encounter_id,
            b.as_of,
            b.window_start,
        )
        np.testing.assert_array_equal(a.ehr_values, b.ehr_values)
        np.testing.assert_array_equal(a.ehr_mask, b.ehr_mask)
        np.testing.assert_array_equal(a.demographics, b.demographics)
        assert a.provenance == b.provenance
        assert a.stay_start == b.stay_start
        assert a.issues == b.issues
        assert len(a.images) == len(b.images)
        for x, y in zip(a.images, b.images, strict=True):
            np.testing.assert_array_equal(x.crops, y.crops)
            np.testing.assert_array_equal(x.region_mask, y.region_mask)
            assert (x.instance_uid, x.acquired, x.imaging_study) == (
                y.instance_uid,
                y.acquired,
                y.imaging_study,
            )


def test_failed_write_leaves_no_file_behind(tmp_path: Path) -> None:
    bad = _timeline(5, 1)
    broken = PatientTimeline(**{**{f: getattr(bad, f) for f in bad.__slots__}, "as_of": None})  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        save_timelines(str(tmp_path / "chunk.npz"), [broken])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("remote", [False, True], ids=["local-folder", "fsspec-url"])
def test_remove_run_deletes_only_that_run(tmp_path: Path, remote: bool) -> None:
    import fsspec

    root = f"memory://clean-{tmp_path.name}" if remote else str(tmp_path)
    kept = save_timelines(f"{run_folder(root, 'run-keep')}/c.npz", [_timeline(1, 0)])
    gone = save_timelines(f"{run_folder(root, 'run-gone')}/c.npz", [_timeline(2, 0)])
    remove_run(root, "run-gone")
    fs, _ = fsspec.core.url_to_fs(root)
    assert fs.exists(fsspec.core.url_to_fs(kept)[1])
    assert not fs.exists(fsspec.core.url_to_fs(gone)[1])
    assert len(load_timelines(kept)) == 1
