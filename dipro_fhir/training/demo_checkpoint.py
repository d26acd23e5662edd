"""The demo checkpoint: trained by the project's own trainer on synthetic patients, validated
on a synthetic cohort of another seed, and shipped inside the package.

``dipro-fhir train-demo --out DIR`` rebuilds it reproducibly (same seeds, same patients, same
epochs): a training cohort (split by the trainer into train / validation / test), then the
held-out cohort, whose evaluation becomes the card's validation record. The shipped copy
(:data:`PACKAGED`) is what the demo, the sandbox and the compose stack score with; its model
card says it is for demonstration only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from dipro_fhir.core.settings import Settings, embedded_settings
from dipro_fhir.evaluation.run import evaluate_checkpoint
from dipro_fhir.synth.cohorts import cohort_patient_ids, write_cohort_once
from dipro_fhir.training.from_source import train_from_settings
from dipro_fhir.training.recipe import DemoTraining
from dipro_fhir.training.trainer import TrainingOutcome

DEMO_MODEL: Final[str] = "dipro-demo"
DEMO_VERSION: Final[str] = "0.4.0-demo"
DEMO_INTENDED_USE: Final[str] = (
    "Demonstration and integration testing only. Trained and validated on synthetic "
    "patients; NOT FOR CLINICAL USE."
)
#: The checkpoint shipped with the package (weights, card, baseline, evaluation).
PACKAGED: Final[Path] = Path(__file__).resolve().parent / "demo_checkpoint"


def _cohort_settings(workdir: Path, cohort: Path) -> Settings:
    settings = embedded_settings(workdir)
    return settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": cohort}),
            "dicomweb": settings.dicomweb.model_copy(update={"folder": cohort / "dicom"}),
        }
    )


def build_demo_checkpoint(
    out: Path,
    workdir: Path,
    recipe: DemoTraining | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> tuple[TrainingOutcome, dict[str, Any]]:
    """Train the demo checkpoint into ``out`` and record its held-out evaluation.

    Args:
        out: The checkpoint folder to write (absent or empty).
        workdir: Where the synthetic cohorts are written (kept for reruns).
        recipe: Cohort sizes, seeds, epochs and network (default: the shipped one's).
        say: Called with a progress line per stage.

    Returns:
        The training outcome and the held-out evaluation record (also in the card).

    Raises:
        TrainingError: The network did not learn.
    """
    recipe = recipe or DemoTraining()
    train_dir, heldout_dir = workdir / "train", workdir / "heldout"
    say(f"synthetic training cohort: {recipe.patients} patients (seed {recipe.train_seed})")
    write_cohort_once(train_dir, recipe.patients, recipe.train_seed, None, "train")
    say(f"synthetic held-out cohort: {recipe.heldout} patients (seed {recipe.heldout_seed})")
    write_cohort_once(heldout_dir, recipe.heldout, recipe.heldout_seed, None, "heldout")
    outcome = train_from_settings(
        _cohort_settings(workdir, train_dir),
        cohort_patient_ids(train_dir),
        out,
        name=DEMO_MODEL,
        version=DEMO_VERSION,
        epochs=recipe.epochs,
        patience=recipe.patience,
        config=recipe.config(),
        training_data=(
            f"synthetic ICU cohort of dipro_fhir.synth, seed {recipe.train_seed}, "
            f"{recipe.patients} patients"
        ),
        intended_use=DEMO_INTENDED_USE,
        site="synthetic",
        seed=recipe.seed,
        progress=say,
        patients_read=lambda done, total: (
            None if done % 200 and done != total else say(f"read {done} of {total} patients")
        ),
    )
    say(f"evaluating on the held-out cohort ({recipe.heldout} patients)")
    record = evaluate_checkpoint(
        _cohort_settings(workdir, heldout_dir),
        out,
        out,
        patient_ids=cohort_patient_ids(heldout_dir),
        site=f"synthetic held-out cohort, seed {recipe.heldout_seed}",
        record=True,
    )
    return outcome, record


def copy_packaged(target: Path) -> None:
    """Copy the shipped demo checkpoint to ``target`` (replacing what is there)."""
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(PACKAGED, partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
