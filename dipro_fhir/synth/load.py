"""Put a synthetic cohort where the pipeline reads from: files or real servers.

* :func:`write_files` leaves a FHIR Bulk Data style folder (``Patient.ndjson``,
  ``Encounter.ndjson``, ``Observation.ndjson``, ``ImagingStudy.ndjson``,
  ``DiagnosticReport.ndjson``, ``Endpoint.ndjson``), DICOM files under
  ``dicom/<StudyInstanceUID>/<SOPInstanceUID>.dcm`` and ``truth.jsonl``; it streams, appending
  patient by patient, so a large cohort never sits in memory.
* :func:`load_into_servers` sends each patient as FHIR transaction Bundles of ``PUT``s
  (idempotent, DESIGN.md) and its images by STOW-RS (DICOM PS3.18 10.5).

Only counts and durations are logged (no patient data).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from pydicom.dataset import Dataset

from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.synth import fhir as synth_fhir
from dipro_fhir.synth.images import DEFAULT_SIZE, render_patient, render_study
from dipro_fhir.synth.radiograph import write_dicom
from dipro_fhir.synth.truth_io import truth_to_json
from dipro_fhir.synth.world import SyntheticPatient

log = logging.getLogger(__name__)

#: NDJSON files written, one per resource type.
RESOURCE_TYPES = (
    "Patient",
    "Encounter",
    "Observation",
    "ImagingStudy",
    "DiagnosticReport",
    "Endpoint",
)
TRUTH_FILE = "truth.jsonl"
DICOM_DIR = "dicom"

Progress = Callable[[int], None]


class TransactionClient(Protocol):
    """What loading needs of a FHIR client (``dipro_fhir.fhir.client.FhirClient``)."""

    def transaction(self, bundle: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """POST a transaction Bundle and return the response Bundle."""
        ...


class InstanceStore(Protocol):
    """What loading needs of a DICOMweb client (``dipro_fhir.dicomweb.client.DicomWebClient``)."""

    def store(self, datasets: Sequence[Dataset]) -> None:
        """STOW-RS the datasets."""
        ...


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What was written.

    Attributes:
        patients: Patients written.
        resource_counts: ``(resourceType, count)`` sorted by type.
        instances: DICOM instances written or stored.
        bundles: Transaction bundles sent (0 for files).
        fhir_seconds: Time spent producing/sending FHIR resources.
        dicom_seconds: Time spent rendering and writing/storing images.
    """

    patients: int
    resource_counts: tuple[tuple[str, int], ...]
    instances: int
    bundles: int
    fhir_seconds: float
    dicom_seconds: float

    def count(self, resource_type: str) -> int:
        """Resources written of one type (0 if none)."""
        return dict(self.resource_counts).get(resource_type, 0)


def write_files(
    patients: Iterable[SyntheticPatient],
    directory: str | Path,
    *,
    dicomweb_base_url: str = "http://127.0.0.1:8042/dicom-web",
    image_size: tuple[int, int] = DEFAULT_SIZE,
    progress: Progress | None = None,
    images: bool = True,
) -> LoadReport:
    """Write FHIR NDJSON, DICOM files and ``truth.jsonl`` into ``directory`` (created).

    Existing files of the same names are replaced.

    Args:
        patients: The cohort (streamed).
        directory: Output folder.
        dicomweb_base_url: ``Endpoint.address`` the ImagingStudies point to.
        image_size: Rendered ``(height, width)``.
        progress: Called with the number of patients written so far.
        images: Also render and write the DICOM files (``False``: a night of a world whose
            films are written once, :mod:`dipro_fhir.synth.stream`).
    """
    out = Path(directory)
    (out / DICOM_DIR).mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    instances, n, fhir_s, dicom_s = 0, 0, 0.0, 0.0
    handles = {t: (out / f"{t}.ndjson").open("w", encoding="utf-8") for t in RESOURCE_TYPES}
    try:
        with (out / TRUTH_FILE).open("w", encoding="utf-8") as truth:
            _write_line(handles["Endpoint"], synth_fhir.to_endpoint(dicomweb_base_url))
            counts["Endpoint"] += 1
            for patient in patients:
                t0 = time.perf_counter()
                for res in synth_fhir.to_resources(patient):
                    _write_line(handles[res["resourceType"]], res)
                    counts[res["resourceType"]] += 1
                truth.write(truth_to_json(patient.truth) + "\n")
                t1 = time.perf_counter()
                for ds in render_patient(patient, size=image_size) if images else ():
                    study_dir = out / DICOM_DIR / ds.StudyInstanceUID
                    study_dir.mkdir(exist_ok=True)
                    write_dicom(ds, study_dir / f"{ds.SOPInstanceUID}.dcm")
                    instances += 1
                fhir_s, dicom_s = fhir_s + t1 - t0, dicom_s + time.perf_counter() - t1
                n += 1
                if progress:
                    progress(n)
    finally:
        for handle in handles.values():
            handle.close()
    log.info("synthetic files: %d patients, %d instances", n, instances)
    return LoadReport(n, tuple(sorted(counts.items())), instances, 0, fhir_s, dicom_s)


def _write_line(handle: IO[str], resource: dict[str, Any]) -> None:
    handle.write(json.dumps(resource, separators=(",", ":")) + "\n")


def load_into_servers(
    patients: Iterable[SyntheticPatient],
    fhir_client: TransactionClient,
    dicomweb: InstanceStore | str,
    *,
    dicomweb_base_url: str | None = None,
    batch_size: int = 500,
    image_size: tuple[int, int] = DEFAULT_SIZE,
    progress: Progress | None = None,
) -> LoadReport:
    """Load the cohort into a FHIR server (transactions) and a DICOMweb server (STOW-RS).

    Args:
        patients: The cohort (streamed).
        fhir_client: A FHIR client with ``transaction`` (``FhirClient``).
        dicomweb: A DICOMweb base URL or a client with ``store`` (``DicomWebClient``).
        dicomweb_base_url: ``Endpoint.address``; defaults to ``dicomweb`` when it is a URL.
        batch_size: Entries per transaction Bundle (a patient spans one or more bundles).
        image_size: Rendered ``(height, width)``.
        progress: Called with the number of patients loaded so far.

    Raises:
        ValueError: No ``dicomweb_base_url`` can be known.
        dipro_fhir.core.errors.DiproFhirError: From the FHIR client; also from STOW-RS.
    """
    store, base_url = _instance_store(dicomweb, dicomweb_base_url)
    counts: Counter[str] = Counter()
    instances, n, bundles, fhir_s, dicom_s = 0, 0, 0, 0.0, 0.0
    endpoint = synth_fhir.to_endpoint(base_url)
    t0 = time.perf_counter()
    for bundle in synth_fhir.transaction_bundles([endpoint], batch_size=batch_size):
        fhir_client.transaction(bundle, idempotent=True)
        bundles += 1
    counts["Endpoint"] += 1
    fhir_s += time.perf_counter() - t0
    for patient in patients:
        t0 = time.perf_counter()
        resources = list(synth_fhir.to_resources(patient))
        counts.update(r["resourceType"] for r in resources)
        for bundle in synth_fhir.transaction_bundles(resources, batch_size=batch_size):
            fhir_client.transaction(bundle, idempotent=True)
            bundles += 1
        t1 = time.perf_counter()
        for study in patient.studies:
            datasets = list(render_study(patient, study, size=image_size))
            store.store(datasets)
            instances += len(datasets)
        fhir_s, dicom_s = fhir_s + t1 - t0, dicom_s + time.perf_counter() - t1
        n += 1
        if progress:
            progress(n)
    log.info(
        "synthetic load: %d patients, %d bundles, %d instances, fhir %.1fs, dicom %.1fs",
        n, bundles, instances, fhir_s, dicom_s,
    )  # fmt: skip
    return LoadReport(n, tuple(sorted(counts.items())), instances, bundles, fhir_s, dicom_s)


def _instance_store(
    dicomweb: InstanceStore | str, base_url: str | None
) -> tuple[InstanceStore, str]:
    if isinstance(dicomweb, str):
        return DicomWebClient(dicomweb), base_url or dicomweb
    if base_url is None:
        raise ValueError("dicomweb_base_url is needed when a DICOMweb client is given")
    return dicomweb, base_url
