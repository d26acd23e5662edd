"""What the sandbox loads: the demo checkpoint (trained once and cached) and the synthetic
cohort in HAPI and Orthanc."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from dipro_fhir.sandbox.core import (
    COHORT_PREFIX,
    Sandbox,
    SandboxError,
    iso,
    nights_before,
)

# --- checkpoint ----------------------------------------------------------------------------


def _is_checkpoint(folder: Path) -> bool:
    return (folder / "model_card.json").is_file() and (folder / "weights.pt").is_file()


def ensure_checkpoint(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    """The checkpoint the DAG scores with, under ``checkpoint/``.

    In order: a checkpoint named by ``--checkpoint`` (copied); the one already in the sandbox
    (replaced when its card is of an older format, from before validated checkpoints); else
    the demo checkpoint shipped with the package (trained and validated by
    ``dipro-fhir train-demo``).
    """
    from dipro_fhir.core.errors import ModelContractError
    from dipro_fhir.scoring.card import read_model_card
    from dipro_fhir.training.demo_checkpoint import copy_packaged

    target = sandbox.checkpoint
    source = sandbox.config.checkpoint_source
    if source:
        source_path = Path(source).resolve()
        if not _is_checkpoint(source_path):
            raise SandboxError(f"--checkpoint {source}: no model_card.json + weights.pt there")
        if source_path != target.resolve():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source_path, target)
        note(f"copied from {source_path}")
    elif _is_checkpoint(target) and _readable(target, read_model_card, ModelContractError):
        note(f"reusing {target}")
    else:
        copy_packaged(target)
        note("the demo checkpoint shipped with the package")
    card = json.loads((target / "model_card.json").read_text())
    note(f"{card.get('name')} {card.get('version')}")


def _readable(folder: Path, read: Callable[[Path], object], error: type[Exception]) -> bool:
    try:
        read(folder)
    except error:
        return False
    return True


# --- synthetic cohort ----------------------------------------------------------------------


def _fhir_count(sandbox: Sandbox, resource_type: str) -> int:
    response = requests.get(
        f"{sandbox.fhir_url}/{resource_type}",
        params={"_summary": "count"},
        headers={"Accept": "application/fhir+json", "Cache-Control": "no-cache"},
        timeout=30,
    )
    response.raise_for_status()
    return int(response.json().get("total", 0))


def _orthanc_studies(sandbox: Sandbox) -> int:
    response = requests.get(f"{sandbox.orthanc_url}/studies", timeout=30)
    response.raise_for_status()
    return len(response.json())


def ensure_cohort(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    """Load the synthetic cohort into HAPI and Orthanc unless it is already there.

    Admissions spread over the six days before tonight's as-of time, so that there are
    encounters under way tonight and on each of the three nights before (the backfill); the
    cohort's "now" is the load time. Only counts are printed.
    """
    state = sandbox.read_state()
    loaded = state.get("cohort")
    if loaded and sandbox.truth_file.exists():
        on_fhir = _fhir_count(sandbox, "Patient")
        on_orthanc = _orthanc_studies(sandbox)
        if on_fhir >= loaded["patients"] and on_orthanc >= loaded["studies"]:
            note(f"already loaded ({on_fhir} patients, {on_orthanc} studies)")
            return
    from dipro_fhir.fhir.client import FhirClient
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import load_into_servers
    from dipro_fhir.synth.truth_io import truth_to_json

    c = sandbox.config
    reference = datetime.now(UTC).replace(microsecond=0)
    nights = nights_before(reference)
    patients = list(
        generate_cohort(
            c.patients,
            seed=c.seed,
            start=nights[0] - timedelta(days=6),
            admission_span_days=5.5,
            reference_time=reference,
            id_prefix=COHORT_PREFIX,
        )
    )
    with FhirClient(sandbox.fhir_url) as client:
        report = load_into_servers(
            patients, client, sandbox.dicomweb_url, image_size=(c.image_size, c.image_size)
        )
    sandbox.truth_file.parent.mkdir(parents=True, exist_ok=True)
    sandbox.truth_file.write_text("".join(truth_to_json(p.truth) + "\n" for p in patients))
    studies = sum(len(p.studies) for p in patients)
    sandbox.write_state(
        cohort={
            "patients": report.patients,
            "studies": studies,
            "instances": report.instances,
            "reference_time": iso(reference),
            "nights": [iso(n) for n in nights],
            "seed": c.seed,
        }
    )
    note(
        f"{report.patients} patients, {report.bundles} FHIR transactions, "
        f"{report.instances} DICOM instances ({c.image_size} px)"
    )
