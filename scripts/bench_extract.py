"""Benchmark extraction + mapping of a synthetic cohort: real servers and files.

Starts the test FHIR server and an Orthanc on loopback (as the pytest fixtures do), loads
``--patients`` synthetic ICU patients through FHIR transactions and STOW-RS, then runs
``dipro-fhir extract``'s code path against the servers and against the same cohort as
files, printing per-stage timings, patients/s and peak memory for each.

    .venv/bin/python scripts/bench_extract.py --patients 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dipro_fhir.core.settings import (
    SYNTHETIC_LOCATOR,
    DicomWebSettings,
    FhirSettings,
    ImagingSettings,
    RunSettings,
    Settings,
)
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.reports.extract_report import extract_cohort
from dipro_fhir.sandbox.servers.orthanc import start_orthanc, stop_orthanc
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import load_into_servers, write_files
from tests.servers.fhir_server import start_fhir_server

AS_OF = datetime(2026, 11, 24, 2, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=512)
    args = parser.parse_args()
    cohort = lambda: generate_cohort(  # noqa: E731
        args.patients,
        seed=3,
        start=AS_OF - timedelta(days=4),
        admission_span_days=3.5,
        reference_time=AS_OF,
        id_prefix="bench",
    )
    size = (args.image_size, args.image_size)
    work = Path(tempfile.mkdtemp(prefix="dipro-bench-"))
    fhir = start_fhir_server()
    (work / "orthanc").mkdir()
    orthanc = start_orthanc(work / "orthanc", with_auth=False)
    try:
        started = time.perf_counter()
        with FhirClient(fhir.base_url) as client:
            report = load_into_servers(cohort(), client, orthanc.dicomweb_url, image_size=size)
        print(
            f"loaded {report.patients} patients, {sum(n for _, n in report.resource_counts)} "
            f"resources, {report.instances} DICOM instances in "
            f"{time.perf_counter() - started:.1f} s"
        )
        run = RunSettings(availability="issued")  # loaded today: read availability from issued
        servers = Settings(
            fhir=FhirSettings(base_url=fhir.base_url),
            dicomweb=DicomWebSettings(base_url=orthanc.dicomweb_url),
            run=run,
            imaging=ImagingSettings(locator=SYNTHETIC_LOCATOR),
        )
        print("\n== from the FHIR server + Orthanc (DICOMweb)")
        print(extract_cohort(servers, as_of=AS_OF, show_progress=True).render())
        write_files(cohort(), work / "files", image_size=size)
        files = Settings(
            fhir=FhirSettings(ndjson_dir=work / "files"),
            dicomweb=DicomWebSettings(folder=work / "files" / "dicom"),
            run=run,
            imaging=ImagingSettings(locator=SYNTHETIC_LOCATOR),
        )
        print("\n== from files (FHIR NDJSON + DICOM folder)")
        print(extract_cohort(files, as_of=AS_OF, show_progress=True).render())
    finally:
        fhir.stop()
        stop_orthanc(orthanc, work / "orthanc")


if __name__ == "__main__":
    main()
