"""Two consecutive nights over one synthetic cohort, with the shared feature cache.

Starts the test servers on loopback as the pytest fixtures do: HAPI FHIR (the tests' jar;
``--fhir medplum`` for the lighter second test server),
Orthanc with DICOMweb, and a fresh database on the local PostgreSQL (migrated; it holds the
results and the feature cache). Two cohorts are loaded: one where a quarter of the patients
get one new chest X-ray between the nights (``dipro_fhir.synth.nights``), and one that does
not change. Each night runs the pipeline's own steps (plan, extract, score, write-back to
the results database; RiskAssessments are not sent, see ``scripts/bench_writeback.py``) for
exactly that cohort's patients, and the script prints per night: wall time per stage, WADO
bytes fetched (pixels; QIDO and metadata separately), backbone crops computed, CXRs served
from the cache, the night-2/night-1 ratios and the process's peak resident memory.

    .venv/bin/python scripts/bench_nightly.py --patients 100
    .venv/bin/python scripts/bench_nightly.py --checkpoint DIR --patients 8

It scores with the demo checkpoint shipped with the package (the small CPU network), or a
checkpoint of the caller's (``--checkpoint``; the paper's ResNet-50 config costs ~200 times
more per CXR, ``python -m dipro.bench`` measures it on its own). The pipeline's validation gate
applies: a checkpoint without a validation record on held-out patients does not score, so a
network with random weights cannot be benchmarked through the pipeline any more.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))

from pydantic import SecretStr

from dipro_fhir.core.manifest import RunRequest
from dipro_fhir.core.settings import (
    SYNTHETIC_LOCATOR,
    DicomWebSettings,
    FhirSettings,
    ImagingSettings,
    ModelSettings,
    RunSettings,
    Settings,
    StoreSettings,
    WriteBackSettings,
)
from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.run.extract_stage import extract_chunk
from dipro_fhir.run.finalize import finalize_run
from dipro_fhir.run.plan import plan_run
from dipro_fhir.run.score_stage import score_chunk
from dipro_fhir.run.writeback_stage import write_back_chunk
from dipro_fhir.sandbox.servers.hapi_server import start_hapi_server
from dipro_fhir.sandbox.servers.orthanc import start_orthanc, stop_orthanc
from dipro_fhir.sandbox.servers.postgres import PG_HOST, PG_PORT, PG_USER, PgServer, admin
from dipro_fhir.store import upgrade_database
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.fhir import to_imaging_study, transaction_bundles
from dipro_fhir.synth.images import render_study
from dipro_fhir.synth.load import load_into_servers
from dipro_fhir.synth.nights import TwoNights, plan_two_nights
from tests.servers.fhir_server import start_fhir_server

NIGHT_TWO = datetime(2026, 11, 24, 2, tzinfo=UTC)
NIGHT_ONE = NIGHT_TWO - timedelta(days=1)
STAGES = (
    "plan", "extract.fhir", "extract.validate", "extract.images",
    "extract.images.qido_metadata", "images.pixels", "extract.map",
    "model_load", "score.backbone", "score", "writeback",
)  # fmt: skip
COUNTS = ("wado_instance_bytes", "dicomweb_other_bytes", "backbone_crops", "cxrs_from_cache")


def _checkpoint(source: str | None, folder: Path) -> tuple[Path, str]:
    """A copy of the checkpoint to score with, and its short label."""
    from dipro_fhir.training.demo_checkpoint import PACKAGED

    shutil.copytree(Path(source) if source else PACKAGED, folder)
    return folder, "site" if source else "demo"


def _cohort(n: int, prefix: str, share: float) -> TwoNights:
    patients = generate_cohort(
        n, seed=7, start=NIGHT_ONE - timedelta(days=3), admission_span_days=2.0,
        reference_time=NIGHT_TWO, id_prefix=prefix,
    )  # fmt: skip
    return plan_two_nights(patients, NIGHT_ONE, share=share)


def _add_new_cxrs(plan: TwoNights, fhir: str, dicomweb: str, size: tuple[int, int]) -> None:
    client = DicomWebClient(dicomweb)
    studies = [to_imaging_study(p, s) for p, s in plan.new_studies]
    with FhirClient(fhir) as fhir_client:
        for bundle in transaction_bundles(studies):
            fhir_client.transaction(bundle, idempotent=True)
    for p, study in plan.new_studies:
        client.store(list(render_study(replace(p, studies=(study,)), study, size=size)))


def _night(settings: Settings, as_of: datetime, ids: tuple[str, ...]) -> dict[str, float]:
    """Run one night chunk by chunk; return summed stage seconds and counts."""
    totals: dict[str, float] = {}
    started = time.perf_counter()
    manifests = plan_run(settings, RunRequest(as_of=as_of, dag_run_id="bench", patient_ids=ids))
    totals["plan"] = time.perf_counter() - started
    done = []
    for manifest in manifests:
        for step in (extract_chunk, score_chunk, write_back_chunk):
            manifest = step(settings, manifest)
        done.append(manifest)
        for key, value in {**manifest["counts"], **manifest["timings_s"]}.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    finalize_run(settings, done)
    totals["wall"] = time.perf_counter() - started
    # What the cache can save in the image stage: WADO retrieval, decoding, regions, crops.
    qido = totals.get("extract.images.qido_metadata", 0.0)
    totals["images.pixels"] = totals.get("extract.images", 0.0) - qido
    totals["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return totals


def _ratio(two: float, one: float) -> str:
    return f"{two / one:8.3f}" if one else "       -"


def _report(label: str, one: dict[str, float], two: dict[str, float]) -> None:
    print(f"\n== {label}")
    print(f"{'':30}{'night 1':>14}{'night 2':>14}{'2 / 1':>9}")
    for key in (*STAGES, "wall"):
        a, b = one.get(key, 0.0), two.get(key, 0.0)
        print(f"{key + ' (s)':30}{a:14.2f}{b:14.2f} {_ratio(b, a)}")
    for key in COUNTS:
        a, b = one.get(key, 0.0), two.get(key, 0.0)
        print(f"{key:30}{a:14,.0f}{b:14,.0f} {_ratio(b, a)}")
    for label, keys in (
        ("images + score (s)", ("extract.images", "score")),
        ("pixels + score (s)", ("images.pixels", "score")),
    ):
        a, b = sum(one.get(k, 0) for k in keys), sum(two.get(k, 0) for k in keys)
        print(f"{label:30}{a:14.2f}{b:14.2f} {_ratio(b, a)}")
    print(f"{'peak RSS (MiB)':30}{one['peak_rss_mib']:14.0f}{two['peak_rss_mib']:14.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--checkpoint", help="a validated checkpoint (default: the demo's)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--share", type=float, default=0.25, help="patients with a new CXR")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--fhir", choices=("hapi", "medplum"), default="hapi", help="FHIR test server to use"
    )
    args = parser.parse_args()
    size = (args.image_size, args.image_size)
    work = Path(tempfile.mkdtemp(prefix="dipro-nightly-"))
    pg = PgServer(PG_HOST, PG_PORT, PG_USER)
    database = f"dipro_bench_{uuid.uuid4().hex[:12]}"
    admin(pg, f'CREATE DATABASE "{database}"')
    fhir = start_hapi_server(timeout_s=900) if args.fhir == "hapi" else start_fhir_server()
    (work / "orthanc").mkdir()
    orthanc = start_orthanc(work / "orthanc", with_auth=False)
    checkpoint, checkpoint_label = _checkpoint(args.checkpoint, work / "ckpt")
    try:
        upgrade_database(pg.url(database))
        settings = Settings(
            fhir=FhirSettings(base_url=fhir.base_url),
            dicomweb=DicomWebSettings(base_url=orthanc.dicomweb_url),
            store=StoreSettings(url=SecretStr(pg.url(database))),
            model=ModelSettings(checkpoint=checkpoint, device="auto"),
            writeback=WriteBackSettings(target="none"),
            run=RunSettings(availability="issued", staging_dir=str(work / "staging")),
            imaging=ImagingSettings(locator=SYNTHETIC_LOCATOR),
        )
        figures: dict[str, Any] = {"checkpoint": checkpoint_label, "patients": args.patients}
        for label, share in (("changing", args.share), ("unchanged", 0.0)):
            plan = _cohort(args.patients, f"{label[:2]}{checkpoint_label[:2]}", share)
            started = time.perf_counter()
            with FhirClient(fhir.base_url) as client:
                load_into_servers(plan.night_one, client, orthanc.dicomweb_url, image_size=size)
            print(f"{label}: loaded {args.patients} patients in "
                  f"{time.perf_counter() - started:.0f} s")  # fmt: skip
            ids = tuple(p.patient_id for p in plan.night_one)
            one = _night(settings, NIGHT_ONE, ids)
            _add_new_cxrs(plan, fhir.base_url, orthanc.dicomweb_url, size)
            two = _night(settings, NIGHT_TWO, ids)
            name = f"{label} cohort ({checkpoint_label}, {args.patients} patients, "
            name += f"{len(plan.new_studies)} new CXRs on night 2)"
            _report(name, one, two)
            figures[label] = {"night1": one, "night2": two, "new_cxrs": len(plan.new_studies)}
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    finally:
        fhir.stop()
        stop_orthanc(orthanc, work / "orthanc")
        admin(pg, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
