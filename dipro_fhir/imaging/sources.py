"""One interface for image sources, with two real implementations.

:class:`ImageSource` is what the pipeline asks for chest radiographs:
:class:`DicomWebImageSource` talks QIDO-RS/WADO-RS to a PACS or VNA;
:class:`FolderImageSource` reads a local folder of DICOM Part 10 files (the embedded demo,
exports, tests). Both answer the same questions with the same types, so selection and
mapping code cannot tell them apart.

A folder can hold two files of one SOP Instance UID (a re-export, a copy). The UID names one
object (PS3.3 C.12.1.1.1), so the folder source serves exactly one: the file whose path,
relative to the folder, sorts first (plain string order of POSIX paths), which does not
depend on the order the file system lists them. The others are ignored and each such UID
is a ``duplicate-sop-instance`` data problem of the patient whose study holds it
(:meth:`ImageSource.study_problems`).

Filtering by ViewPosition and BodyPartExamined happens client-side on instance metadata
(WADO-RS series metadata, or file headers): many servers, Orthanc among them, do not index
those tags, and QIDO on unindexed tags reads every file from storage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any, Protocol

import pydicom
from pydicom.dataset import Dataset

from dipro_fhir.core.errors import ResourceNotFound
from dipro_fhir.core.timeline import MappingIssue
from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.imaging.decode import DECODE_ERRORS, CorruptImage
from dipro_fhir.imaging.frontal import ImageCandidate

log = logging.getLogger(__name__)

#: Projection radiography modalities DiPro can use (PS3.3 C.7.3.1.1.1).
CHEST_MODALITIES: tuple[str, ...] = ("CR", "DX")


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One series of a study, from QIDO-RS or file headers."""

    study_uid: str
    series_uid: str
    modality: str
    series_description: str = ""
    instance_count: int = 0


class ImageSource(Protocol):
    """Where radiographs come from (a DICOMweb server or a folder)."""

    def studies_for_patient(
        self, patient_id: str, modalities: Sequence[str] = CHEST_MODALITIES
    ) -> list[str]:
        """Study Instance UIDs of the patient's studies holding a series of ``modalities``."""
        ...

    def series_for_study(self, study_uid: str) -> list[SeriesInfo]:
        """The study's series. Raises ``ResourceNotFound`` when the study has none."""
        ...

    def instances_for_series(
        self, study_uid: str, series_uid: str, site_tz: tzinfo = UTC
    ) -> list[ImageCandidate]:
        """Header facts of every instance of a series (no pixels)."""
        ...

    def retrieve(self, study_uid: str, series_uid: str, instance_uid: str) -> Dataset:
        """The whole instance with pixels. Raises ``ResourceNotFound`` if absent."""
        ...

    def study_problems(self, study_uid: str) -> list[MappingIssue]:
        """Data problems the source found in a study's objects (duplicate UIDs)."""
        ...


def _value(item: dict[str, Any], tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def _no_bulk(_uri: str) -> bytes:
    """Bulk data (BulkDataURI) is not needed for header facts."""
    return b""


class DicomWebImageSource:
    """:class:`ImageSource` over a DICOMweb server."""

    def __init__(self, client: DicomWebClient) -> None:
        self._client = client

    @property
    def bytes_received(self) -> dict[str, int]:
        """Response bytes received so far, per action (``"WADO instance"``: the pixels)."""
        return dict(self._client.bytes_received)

    @property
    def seconds_by_action(self) -> dict[str, float]:
        """Seconds spent in DICOMweb calls so far, per action."""
        return dict(self._client.seconds_by_action)

    def studies_for_patient(
        self, patient_id: str, modalities: Sequence[str] = CHEST_MODALITIES
    ) -> list[str]:
        """One exact-match QIDO series query per modality (no wildcards, no lists)."""
        studies: set[str] = set()
        for modality in modalities:
            found = self._client.search_series(
                filters={"PatientID": patient_id, "Modality": modality}
            )
            studies.update(_value(item, "0020000D") for item in found)
        studies.discard("")
        return sorted(studies)

    def series_for_study(self, study_uid: str) -> list[SeriesInfo]:
        found = self._client.search_series(study_uid=study_uid)
        if not found:
            raise ResourceNotFound("QIDO series: the study has no series on the server")
        return sorted(
            (
                SeriesInfo(
                    study_uid=study_uid,
                    series_uid=_value(item, "0020000E"),
                    modality=_value(item, "00080060").upper(),
                    series_description=_value(item, "0008103E"),
                    instance_count=int(_value(item, "00201209") or 0),
                )
                for item in found
            ),
            key=lambda s: s.series_uid,
        )

    def instances_for_series(
        self, study_uid: str, series_uid: str, site_tz: tzinfo = UTC
    ) -> list[ImageCandidate]:
        items = self._client.series_metadata(study_uid, series_uid)
        datasets = [Dataset.from_json(item, bulk_data_uri_handler=_no_bulk) for item in items]
        return sorted(
            (ImageCandidate.from_dataset(ds, site_tz) for ds in datasets),
            key=lambda c: c.instance_uid,
        )

    def retrieve(self, study_uid: str, series_uid: str, instance_uid: str) -> Dataset:
        return self._client.retrieve_instance(study_uid, series_uid, instance_uid)

    def study_problems(self, study_uid: str) -> list[MappingIssue]:
        return []  # a DICOMweb server keeps one object per SOP Instance UID


@dataclass(frozen=True, slots=True)
class _Indexed:
    header: Dataset
    path: Path


class FolderImageSource:
    """:class:`ImageSource` over a folder tree of DICOM Part 10 files.

    The folder is indexed on first use by reading headers only (``stop_before_pixels``);
    unreadable files are skipped and counted in the log. Of several files with one SOP
    Instance UID the first by relative path is kept (module doc).
    """

    def __init__(self, folder: Path | str) -> None:
        self._folder = Path(folder)
        self._index: dict[str, dict[str, list[_Indexed]]] | None = None
        self._patients: dict[str, set[str]] = {}
        self._duplicates: dict[str, dict[str, int]] = {}  # study -> {SOP UID: files}

    def _studies(self) -> dict[str, dict[str, list[_Indexed]]]:
        if self._index is not None:
            return self._index
        started, skipped = time.monotonic(), 0
        index: dict[str, dict[str, list[_Indexed]]] = {}
        kept: set[tuple[str, str]] = set()
        files = (p for p in self._folder.rglob("*") if p.is_file())
        for path in sorted(files, key=lambda p: p.relative_to(self._folder).as_posix()):
            if path.name.startswith("."):
                continue
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                study, series = str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
                instance = str(ds.SOPInstanceUID)
            except (pydicom.errors.InvalidDicomError, AttributeError, ValueError, OSError):
                skipped += 1
                continue
            if (study, instance) in kept:
                seen = self._duplicates.setdefault(study, {})
                seen[instance] = seen.get(instance, 1) + 1
                continue
            kept.add((study, instance))
            index.setdefault(study, {}).setdefault(series, []).append(_Indexed(ds, path))
            self._patients.setdefault(str(ds.get("PatientID", "")), set()).add(study)
        self._index = index
        log.info(
            "indexed %d studies in %.0f ms (%d files skipped)",
            len(index),
            1e3 * (time.monotonic() - started),
            skipped,
        )
        return index

    def studies_for_patient(
        self, patient_id: str, modalities: Sequence[str] = CHEST_MODALITIES
    ) -> list[str]:
        index = self._studies()
        wanted = {m.upper() for m in modalities}
        return sorted(
            study
            for study in self._patients.get(patient_id, set())
            if any(
                str(e.header.get("Modality", "")).upper() in wanted
                for entries in index[study].values()
                for e in entries
            )
        )

    def series_for_study(self, study_uid: str) -> list[SeriesInfo]:
        series = self._studies().get(study_uid)
        if not series:
            raise ResourceNotFound("folder: the study has no files")
        return [
            SeriesInfo(
                study_uid=study_uid,
                series_uid=uid,
                modality=str(entries[0].header.get("Modality", "")).upper(),
                series_description=str(entries[0].header.get("SeriesDescription", "")),
                instance_count=len(entries),
            )
            for uid, entries in sorted(series.items())
        ]

    def instances_for_series(
        self, study_uid: str, series_uid: str, site_tz: tzinfo = UTC
    ) -> list[ImageCandidate]:
        entries = self._studies().get(study_uid, {}).get(series_uid, [])
        return sorted(
            (ImageCandidate.from_dataset(e.header, site_tz) for e in entries),
            key=lambda c: c.instance_uid,
        )

    def retrieve(self, study_uid: str, series_uid: str, instance_uid: str) -> Dataset:
        for entry in self._studies().get(study_uid, {}).get(series_uid, []):
            if str(entry.header.SOPInstanceUID) == instance_uid:
                try:
                    return pydicom.dcmread(entry.path)
                except FileNotFoundError as exc:
                    raise ResourceNotFound("folder: the file is gone") from exc
                except DECODE_ERRORS as exc:
                    raise CorruptImage(f"unreadable file: {type(exc).__name__}") from exc
        raise ResourceNotFound("folder: no such instance")

    def study_problems(self, study_uid: str) -> list[MappingIssue]:
        self._studies()
        return [
            MappingIssue(
                "duplicate-sop-instance",
                f"instance/{uid}",
                f"{files} files share this SOP Instance UID; the first by path is used",
            )
            for uid, files in sorted(self._duplicates.get(study_uid, {}).items())
        ]
