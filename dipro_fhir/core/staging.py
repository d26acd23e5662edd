"""The staging area between pipeline steps: one file per chunk, written atomically.

Airflow passes only small manifests through XCom; the mapped timelines of a chunk (arrays of
hourly values and region crops) and its scores travel as files in a staging area: a local
folder, or any fsspec URL (``s3://bucket/dipro``, ``gs://...``, ``memory://`` in tests) so
that tasks on different workers share it. A reader never sees half a chunk: a local file is
written to a temporary name in the same folder and renamed into place (POSIX ``rename`` is
atomic); a remote one is uploaded whole under a temporary key and moved. A retried task
simply overwrites its file; a successful run's folder is removed.

The timelines format is NumPy's ``npz`` without pickling: arrays under ``<patient>/<field>``
keys and one JSON document for everything that is not an array. ``allow_pickle=False`` on
load means a staging file cannot execute code.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from dipro_fhir.core.timeline import (
    EncounterId,
    ImageEvent,
    MappingIssue,
    PatientId,
    PatientTimeline,
    RegionFeatures,
    ResourceRef,
)

_FORMAT = "dipro-fhir/timelines/1"


def _fs(location: str) -> tuple[Any, str]:
    fs, path = fsspec.core.url_to_fs(location)
    return fs, path


def run_folder(staging_dir: str | Path, run_id: str, attempt: str = "") -> str:
    """The location (path or URL) that holds one run's chunk files: one folder per attempt
    (``attempt``, drawn by the plan), so two attempts of one night never share files."""
    base = f"{str(staging_dir).rstrip('/')}/{run_id}"
    return f"{base}/{attempt}" if attempt else base


STASH_KEYS = ("run_id", "index", "stage", "stash")


def stash_manifest(staging_dir: str | Path, manifest: dict[str, Any], stage: str) -> dict[str, Any]:
    """Keep a chunk manifest in the staging area; return a reference without patient data.

    What a scheduler passes between tasks (Airflow's XCom, which its logs print) is then
    ``{"run_id", "index", "stage", "stash"}`` only; :func:`unstash_manifest` reads it back.
    """
    folder = run_folder(staging_dir, str(manifest["run_id"]), str(manifest.get("attempt", "")))
    location = f"{folder}/chunk-{int(manifest['index']):05d}.{stage}.manifest.json"
    write_bytes(location, json.dumps(manifest).encode())
    return {
        "run_id": manifest["run_id"],
        "index": manifest["index"],
        "stage": stage,
        "stash": location,
    }


def unstash_manifest(reference: dict[str, Any]) -> dict[str, Any]:
    """The manifest a :func:`stash_manifest` reference names (a full manifest passes as is)."""
    if "stash" not in reference:
        return reference
    manifest: dict[str, Any] = json.loads(read_bytes(str(reference["stash"])))
    return manifest


def write_bytes(location: str, data: bytes) -> str:
    """Write ``data`` to ``location`` atomically; return the location."""
    fs, path = _fs(location)
    if isinstance(fs, LocalFileSystem):
        folder = Path(path).parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return location
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.pipe_file(tmp, data)
    fs.mv(tmp, path)
    return location


def read_bytes(location: str) -> bytes:
    """Read a staged file whole."""
    fs, path = _fs(location)
    data: bytes = fs.cat_file(path)
    return data


def save_timelines(location: str, timelines: Sequence[PatientTimeline]) -> str:
    """Write a chunk's timelines to ``location`` (a path or fsspec URL) atomically."""
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
            if img.boxes is not None:
                arrays[f"{i}/img{j}/boxes"] = img.boxes
            if img.features is not None:
                arrays[f"{i}/img{j}/features"] = img.features.values
        records.append(_timeline_record(tl))
    header = json.dumps({"format": _FORMAT, "timelines": records}).encode()
    arrays["header"] = np.frombuffer(header, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return write_bytes(location, buffer.getvalue())


def load_timelines(location: str) -> list[PatientTimeline]:
    """Read a chunk written by :func:`save_timelines`."""
    with np.load(io.BytesIO(read_bytes(location)), allow_pickle=False) as data:
        header = json.loads(data["header"].tobytes())
        if header.get("format") != _FORMAT:
            raise ValueError(f"not a timelines chunk ({header.get('format')!r})")
        return [_timeline_from(i, rec, data) for i, rec in enumerate(header["timelines"])]


def remove_run(staging_dir: str | Path, run_id: str, attempt: str = "") -> None:
    """Delete an attempt's staging folder (after it succeeded), and the run's folder when no
    other attempt (a concurrent run of the night) still has files there."""
    fs, path = _fs(run_folder(staging_dir, run_id, attempt))
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs, parent = _fs(run_folder(staging_dir, run_id))
    try:
        if attempt and fs.exists(parent) and not fs.ls(parent):
            fs.rm(parent, recursive=True)
    except OSError:  # another attempt wrote there meanwhile: its finalize removes it
        pass


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
                "qc": [list(q) for q in img.qc],
                "preprocessing": img.preprocessing,
                "features_digest": None if img.features is None else img.features.weights_digest,
            }
            for img in tl.images
        ],
        "provenance": [_ref_json(ref) for ref in tl.provenance],
        "issues": [[x.code, x.resource, x.detail] for x in tl.issues],
        "stay_start": None if tl.stay_start is None else tl.stay_start.isoformat(),
    }


def _features(data: Any, prefix: str, digest: str | None) -> RegionFeatures | None:
    if digest is None:
        return None
    return RegionFeatures(data[f"{prefix}/features"], digest)


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
            features=_features(data, f"{i}/img{j}", img.get("features_digest")),
            boxes=data.get(f"{i}/img{j}/boxes"),
            qc=tuple((str(c), str(d)) for c, d in img.get("qc", [])),
            preprocessing=str(img.get("preprocessing", "")),
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
        stay_start=None if rec["stay_start"] is None else datetime.fromisoformat(rec["stay_start"]),
    )
