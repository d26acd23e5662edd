"""Benchmark FHIR extraction modes on HAPI: requests, bytes and wall time per mode.

Loads ``--patients`` synthetic ICU patients into the HAPI test server (FHIR transactions; the
radiographs go to a DICOM folder that every mode reads alike), then extracts the patients
in ICU at the as-of time four ways and checks that all give the same timelines:

* ``naive``: per patient, one Observation search per mapped DiPro variable (its codes),
  plus Patient, Encounter and ImagingStudy: the per-patient, per-code baseline;
* ``rest``: today's path (:class:`HttpFhirSource`: four searches per patient, paged);
* ``batched``: :class:`BatchedHttpFhirSource` (three searches per chunk of 50 patients);
* ``bulk``: a Group of the cohort, ``Group/[id]/$export`` (polled; Observations with the
  nightly DAG's ``_typeFilter`` on the mapped codes), NDJSON downloaded and read by the
  NDJSON source; ``bulk-system``: the same with ``[base]/$export`` (every patient on the
  server).

Then a second, incremental night in bulk mode: some Observations of the cohort change (a
new day: amended and new results) and the Observations are exported with ``_since`` the
first night's ``transactionTime``: only the changed ones come back.

    .venv/bin/python scripts/bench_extract_modes.py --patients 100

A large cohort takes long to load (about 250-370 resources/s on 2 cores), so load it once into
a server that outlives the benchmark, then run the modes against it:

    .venv/bin/python -m dipro_fhir.sandbox.servers.hapi_server --port 18080 \
        --java-opts "-Xmx10g -XX:+UseParallelGC" -- --hapi.fhir.mass_ingestion_mode_enabled=true &
    .venv/bin/python scripts/bench_extract_modes.py --patients 1000 \
        --base-url http://127.0.0.1:18080/fhir --load-only
    .venv/bin/python scripts/bench_extract_modes.py --patients 1000 \
        --base-url http://127.0.0.1:18080/fhir --no-load

Requests and bytes are counted on the client's session (response bodies as received).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dipro_fhir.core.scores import PatientFailure
from dipro_fhir.core.timeline import PatientId
from dipro_fhir.fhir.batched import BatchedHttpFhirSource, prefetch_chunk
from dipro_fhir.fhir.bulk import BulkExportClient, PollPolicy
from dipro_fhir.fhir.bulk_files import download_export
from dipro_fhir.fhir.bulk_requests import ExportRequest, code_filter, code_tokens, export_requests
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.fhir.source import FhirSource, HttpFhirSource
from dipro_fhir.imaging.regions import GeometricRegionLocator
from dipro_fhir.imaging.sources import FolderImageSource
from dipro_fhir.mapping.code_maps import default_code_maps
from dipro_fhir.run.bulk import cohort_group
from dipro_fhir.run.extract import ExtractOptions, StageTimer, extract_patient
from dipro_fhir.sandbox.servers.hapi_server import start_hapi_server
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import load_into_servers, write_files
from tests.timelines import fingerprint

AS_OF = datetime(2026, 11, 24, 2, tzinfo=UTC)
CHUNK = 50
# The test fixture's JVM is tuned to start fast (C1 only, 1 GB, serial GC). A benchmark of a
# few hundred thousand resources in H2's in-memory database needs the full JIT and a larger
# heap, and loads faster in HAPI's mass-ingestion mode (measured here: 223 -> 372 resources/s).
BENCH_JAVA_OPTS = ("-Xmx8g", "-XX:+UseParallelGC")
BENCH_HAPI_ARGS = ("--hapi.fhir.mass_ingestion_mode_enabled=true",)


class CountingSession(requests.Session):
    """A session that counts requests and response bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self.bytes = 0
        self.hooks["response"].append(self._count)

    def _count(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.requests += 1
        declared = response.headers.get("Content-Length")
        if declared is not None:
            self.bytes += int(declared)
        elif not kwargs.get("stream"):
            self.bytes += len(response.content)


class NaiveSource(HttpFhirSource):
    """Per patient and per mapped variable: one Observation search each (the baseline)."""

    def __init__(self, client: FhirClient) -> None:
        super().__init__(client)
        by_variable: dict[str, list[str]] = {}
        for (system, code), t in default_code_maps().variables.entries.items():
            by_variable.setdefault(t.target_code, []).append(f"{system}|{code}" if system else code)
        self.variable_codes = list(by_variable.values())

    def observations(
        self,
        patient_id: str,
        *,
        since: datetime,
        until: datetime,
        codes: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        for variable_codes in self.variable_codes:
            for o in super().observations(patient_id, since=since, until=until,
                                          codes=variable_codes):  # fmt: skip
                if o["id"] not in seen:  # a panel may carry two variables
                    seen.add(o["id"])
                    yield o


@dataclass
class Result:
    mode: str
    requests: int
    bytes: int
    wall_s: float
    fhir_s: float
    timelines: dict[str, tuple[Any, ...]]
    failures: int
    note: str = ""


def _options() -> ExtractOptions:
    return ExtractOptions(
        window_hours=48, crop_size=32, max_cxrs=6, locator=GeometricRegionLocator(),
        site_tz=UTC, availability="issued",
    )  # fmt: skip


def _extract_all(
    source: FhirSource, images: FolderImageSource, cohort: list[tuple[str, str]]
) -> tuple[dict[str, tuple[Any, ...]], int, float]:
    timer, found, failures = StageTimer(), {}, 0
    for n in range(0, len(cohort), CHUNK):
        chunk = cohort[n : n + CHUNK]
        with timer.stage("fhir"):
            prefetch_chunk(source, [p for p, _ in chunk], AS_OF, 48)
        for patient_id, _encounter in chunk:
            result = extract_patient(
                source, images, PatientId(patient_id), None, AS_OF, _options(), timer
            )
            if isinstance(result, PatientFailure):
                failures += 1
            else:
                found[patient_id] = fingerprint(result)
    return found, failures, timer.seconds["fhir"]


def run_rest_mode(mode: str, base_url: str, images: FolderImageSource, cohort: Any) -> Result:
    session = CountingSession()
    with FhirClient(base_url, session=session, page_size=200) as client:
        source: HttpFhirSource
        if mode == "naive":
            source = NaiveSource(client)
        elif mode == "batched":
            source = BatchedHttpFhirSource(client, batch_size=CHUNK)
        else:
            source = HttpFhirSource(client)
        started = time.perf_counter()
        found, failures, fhir_s = _extract_all(source, images, cohort)
        wall = time.perf_counter() - started
    session.close()
    return Result(mode, session.requests, session.bytes, wall, fhir_s, found, failures)


def _mapped_codes() -> str | None:
    """The nightly DAG's ``_typeFilter``: every code of the default maps (POSTed: too long
    for a URL)."""
    return code_filter(code_tokens(default_code_maps().variables.entries))


def run_bulk_mode(
    base_url: str,
    images: FolderImageSource,
    cohort: Any,
    work: Path,
    *,
    system: bool = False,
    type_filter: bool = True,
) -> tuple[Result, str]:
    session = CountingSession()
    with FhirClient(base_url, session=session) as client:
        started = time.perf_counter()
        group = cohort_group("bench", [p for p, _ in cohort])
        if not system:
            client.put(group)
        bulk = BulkExportClient(client, PollPolicy(initial_s=0.5, max_s=5.0))
        group_id = None if system else group["id"]
        filter_ = _mapped_codes() if type_filter else None
        reqs = export_requests(group_id=group_id, as_of=AS_OF, window_hours=48,
                               watermark=None, observation_filter=filter_)  # fmt: skip
        jobs = [bulk.kick_off(r) for r in reqs]
        manifests = bulk.wait(jobs)
        folder = work / ("system" if system else "night1")
        report = download_export(client, manifests, folder)
        bulk.cancel_all(jobs)
        export_s = time.perf_counter() - started
        source = NdjsonFhirSource(folder)
        found, failures, fhir_s = _extract_all(source, images, cohort)
        wall = time.perf_counter() - started
    note = (f"export {export_s:.1f} s ({bulk.stats.polls} polls, _typeFilter "
            f"{'used' if all(j.type_filter_used for j in jobs[1:]) else 'NOT used'}), "
            f"files {report.lines_by_type()}")  # fmt: skip
    mode = "bulk-system" if system else "bulk"
    result = Result(mode, session.requests, session.bytes, wall, fhir_s + export_s, found,
                    failures, note)  # fmt: skip
    return result, manifests[1].transaction_time


def incremental_night(base_url: str, cohort: Any, watermark: str, work: Path) -> str:
    """Change some Observations (a new day), then export Observations ``_since`` the first
    night's transactionTime; return a line of counts."""
    changed: set[str] = set()
    with FhirClient(base_url) as client:
        for patient_id, _ in cohort[::5]:  # every fifth patient gets 3 amended results
            found = client.search("Observation", {"subject": f"Patient/{patient_id}"})
            for obs in [o for _, o in zip(range(3), found, strict=False)]:
                obs["note"] = [{"text": "amended on the second night"}]
                before = obs["meta"]["versionId"]
                if client.put(obs)["meta"]["versionId"] != before:
                    changed.add(obs["id"])
        total = client.count("Observation", {})
    session = CountingSession()
    with FhirClient(base_url, session=session) as client:
        bulk = BulkExportClient(client, PollPolicy(initial_s=0.5, max_s=5.0))
        group = cohort_group("bench", [])["id"]
        since = datetime.fromisoformat(watermark)
        job = bulk.kick_off(ExportRequest(("Observation",), group, since))
        started = time.perf_counter()
        download_export(client, bulk.wait([job]), work / "night2")
        bulk.cancel(job)
        wall = time.perf_counter() - started
    got = {o["id"] for _, o in NdjsonFhirSource(work / "night2")._stream("Observation")}
    return (
        f"incremental night (bulk, Observation _since=watermark): {len(got)} exported "
        f"({'exactly the' if got == changed else 'NOT the'} {len(changed)} changed) of {total} "
        f"on the server; {session.requests} requests, {session.bytes / 1e6:.2f} MB, "
        f"{wall:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--base-url", help="use this HAPI instead of starting one")
    parser.add_argument("--modes", default="naive,rest,batched,bulk,bulk-system")
    parser.add_argument("--sample", type=int,
                        help="extract only the first N patients in the ICU (for the slow naive "
                             "baseline on a large cohort)")  # fmt: skip
    parser.add_argument("--type-filter", action=argparse.BooleanOptionalAction, default=True,
                        help="bulk: send the DAG's _typeFilter on the mapped codes")  # fmt: skip
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--load-only", action="store_true", help="load the cohort and stop")
    load.add_argument("--no-load", action="store_true",
                      help="the server at --base-url already holds this cohort")  # fmt: skip
    args = parser.parse_args()
    # SIGTERM as an exception, so a killed benchmark still cancels its export jobs (DELETE).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.no_load and not args.base_url:
        parser.error("--no-load needs --base-url")
    cohort_of = lambda: generate_cohort(  # noqa: E731
        args.patients, seed=3, start=AS_OF - timedelta(days=4), admission_span_days=3.5,
        reference_time=AS_OF, id_prefix="modes",
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="dipro-modes-"))
    server = None if args.base_url else start_hapi_server(java_opts=BENCH_JAVA_OPTS,
                                                          extra_args=BENCH_HAPI_ARGS)  # fmt: skip
    base_url = args.base_url or server.base_url  # type: ignore[union-attr]
    try:
        if not args.no_load:
            _load(base_url, cohort_of())
        if args.load_only:
            return
        files = write_files(cohort_of(), work / "files", image_size=(128, 128))
        print(f"{files.instances} DICOM files", flush=True)
        truths = [p.truth for p in cohort_of()]
        cohort = [(t.patient_id, t.encounter_id) for t in truths
                  if t.admitted <= AS_OF < t.discharged]  # fmt: skip
        print(f"cohort: {len(cohort)} patients in ICU at {AS_OF.isoformat()}")
        if args.sample:
            cohort = cohort[: args.sample]
            print(f"sample: the first {len(cohort)} of them")
        images = FolderImageSource(work / "files" / "dicom")
        results, watermark = [], None
        for mode in args.modes.split(","):
            if mode == "bulk":
                result, watermark = run_bulk_mode(base_url, images, cohort, work,
                                                  type_filter=args.type_filter)  # fmt: skip
            elif mode == "bulk-system":
                result, _ = run_bulk_mode(base_url, images, cohort, work, system=True,
                                          type_filter=args.type_filter)  # fmt: skip
            else:
                result = run_rest_mode(mode, base_url, images, cohort)
            results.append(result)
            print(f"  {mode}: {result.requests} requests, {result.wall_s:.1f} s", flush=True)
        _print_table(results, len(cohort))
        if watermark is not None:
            print(incremental_night(base_url, cohort, watermark, work))
    finally:
        if server is not None:
            server.stop()


def _load(base_url: str, cohort: Iterator[Any]) -> None:
    started = time.perf_counter()

    def progress(n: int) -> None:
        if n % 100 == 0:
            print(f"  loaded {n} patients ({time.perf_counter() - started:.0f} s)", flush=True)

    with FhirClient(base_url) as client:
        loaded = load_into_servers(
            cohort,
            client,
            _NoImages(),
            dicomweb_base_url="http://127.0.0.1:8042/dicom-web",
            progress=progress,
        )
    resources = sum(n for _, n in loaded.resource_counts)
    load_s = time.perf_counter() - started
    print(f"loaded {loaded.patients} patients, {resources} resources in {load_s:.0f} s "
          f"({resources / load_s:.0f}/s)", flush=True)  # fmt: skip


class _NoImages:
    def store(self, datasets: Any) -> None:
        """The radiographs are read from the DICOM folder."""


def _print_table(results: list[Result], patients: int) -> None:
    base = next((r for r in results if r.mode == "rest"), results[0])
    naive = next((r for r in results if r.mode == "naive"), results[0])
    print("\n| mode | requests | MB | wall s | FHIR s | patients/s | vs naive req | vs rest "
          "wall | same timelines |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        same = r.timelines == base.timelines
        print(
            f"| {r.mode} | {r.requests} | {r.bytes / 1e6:.1f} | {r.wall_s:.1f} | {r.fhir_s:.1f} "
            f"| {patients / r.wall_s:.2f} | {naive.requests / max(r.requests, 1):.1f}x "
            f"| {base.wall_s / r.wall_s:.1f}x | {'yes' if same else 'NO'} "
            f"({len(r.timelines)} timelines, {r.failures} failures) |"
        )
    for r in results:
        if r.note:
            print(f"{r.mode}: {r.note}")


if __name__ == "__main__":
    main()
