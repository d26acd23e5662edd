"""The staging area between pipeline steps: one file per chunk, written atomically.

Airflow passes only small manifests through XCom; the mapped timelines of a chunk (arrays of
hourly values and region crops) travel as one ``.npz`` file in a staging folder. A file is
written to a temporary name in the same folder and renamed into place (POSIX ``rename`` is
atomic), so a reader never sees half a chunk and a retried task simply overwrites it.

The format is NumPy's ``npz`` without pickling: arrays under ``<patient>/<field>`` keys and one
JSON document for everything that is not an array. ``allow_pickle=False`` on load means a
staging file cannot execute code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from dipro_fhir.timeline import (
    EncounterId,
    ImageEvent,
    MappingIssue,
    PatientId,
    PatientTimeline,
    ResourceRef,
)

_FORMAT = "dipro-fhir/timelines/1"


def run_folder(staging_dir: Path, run_id: str) -> Path:
    """The folder that holds one run's chunk files."""
    return staging_dir / run_id


def write_atomically(path: Path, write: Any) -> Path:
    """Call ``write(file_object)`` on a temp file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_timelines(path: Path, timelines: Sequence[PatientTimeline]) -> Path:
    """Write a chunk's timelines to ``path`` atomically."""
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    records = []
    for i, tl in enumerate(timelines):
        arrays[f"{i}/ehr_values"] = tl.ehr_values
        arrays[f"{i}/ehr_mask"] = tl.ehr_mask
        arrays[f"{i}/ehr_hours"] = tl.ehr_hours
        arrays[f"{i}/demographics"] = tl.demographics
        for j, img in enumerate(tl.images):
            arrays[f"{i}/img{j}/crops"] = img.crops
            arrays[f"{i}/img{j}/region_mask"] = img.region_mask
        records.append(_timeline_record(tl))
    header = json.dumps({"format": _FORMAT, "timelines": records}).encode()
    arrays["header"] = np.frombuffer(header, dtype=np.uint8)
    return write_atomically(path, lambda handle: np.savez(handle, allow_pickle=False, **arrays))


def load_timelines(path: Path) -> list[PatientTimeline]:
    """Read a chunk written by :func:`save_timelines`."""
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(data["header"].tobytes())
        if header.get("format") != _FORMAT:
            raise ValueError(f"{path.name}: not a timelines chunk ({header.get('format')!r})")
        return [_timeline_from(i, rec, data) for i, rec in enumerate(header["timelines"])]


def remove_run(staging_dir: Path, run_id: str) -> None:
    """Delete a run's staging folder (after the run succeeded)."""
    shutil.rmtree(run_folder(staging_dir, run_id), ignore_errors=True)


def _ref_json(ref: ResourceRef | None) -> list[str | None] | None:
    return None if ref is None else [ref.resource_type, ref.id, ref.version]


def _ref_from(raw: list[str | None] | None) -> ResourceRef | None:
    if raw is None:
        return None
    rtype, rid, version = raw
    return ResourceRef(str(rtype), str(rid), version)


def _timeline_record(tl: PatientTimeline) -> dict[str, Any]:
    return {
        "patient_id": tl.patient_id,
        "encounter_id": tl.encounter_id,
        "as_of": tl.as_of.isoformat(),
        "window_start": tl.window_start.isoformat(),
        "images": [
            {
                "study_uid": img.study_uid,
                "series_uid": img.series_uid,
                "instance_uid": img.instance_uid,
                "acquired": img.acquired.isoformat(),
                "hours": img.hours_since_window_start,
                "view_position": img.view_position,
                "imaging_study": _ref_json(img.imaging_study),
            }
            for img in tl.images
        ],
        "provenance": [_ref_json(ref) for ref in tl.provenance],
        "issues": [[x.code, x.resource, x.detail] for x in tl.issues],
    }


def _timeline_from(i: int, rec: dict[str, Any], data: Any) -> PatientTimeline:
    images = tuple(
        ImageEvent(
            study_uid=img["study_uid"],
            series_uid=img["series_uid"],
            instance_uid=img["instance_uid"],
            acquired=datetime.fromisoformat(img["acquired"]),
            hours_since_window_start=float(img["hours"]),
            crops=data[f"{i}/img{j}/crops"],
            region_mask=data[f"{i}/img{j}/region_mask"],
            view_position=img["view_position"],
            imaging_study=_ref_from(img["imaging_study"]),
        )
        for j, img in enumerate(rec["images"])
    )
    provenance = tuple(ref for ref in map(_ref_from, rec["provenance"]) if ref is not None)
    return PatientTimeline(
        patient_id=PatientId(rec["patient_id"]),
        encounter_id=None if rec["encounter_id"] is None else EncounterId(rec["encounter_id"]),
        as_of=datetime.fromisoformat(rec["as_of"]),
        window_start=datetime.fromisoformat(rec["window_start"]),
        ehr_values=data[f"{i}/ehr_values"],
        ehr_mask=data[f"{i}/ehr_mask"],
        ehr_hours=data[f"{i}/ehr_hours"],
        demographics=data[f"{i}/demographics"],
        images=images,
        provenance=provenance,
        issues=tuple(MappingIssue(c, r, d) for c, r, d in rec["issues"]),
    )


def chunk_files(folder: Path, pattern: str = "*.npz") -> Iterable[Path]:
    """The chunk files in a run folder, in name order."""
    return sorted(folder.glob(pattern))
