"""Train from the configured sources: the patients of a FHIR source and its images, read
the way scoring reads them, streamed into :func:`~dipro_fhir.training.trainer.
train_checkpoint`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from dipro.config import DiproConfig, default_config
from dipro_fhir.core.settings import Settings
from dipro_fhir.evaluation.examples import ExampleCounts, stream_examples
from dipro_fhir.evaluation.provenance import describe_source
from dipro_fhir.run import connections
from dipro_fhir.run.extract import extract_options
from dipro_fhir.training.trainer import TrainingOutcome, TrainingPlan, train_checkpoint

#: What a checkpoint trained by ``dipro-fhir train`` is for, unless the caller says more.
SITE_INTENDED_USE = (
    "Trained with dipro-fhir on the patients described under training data; validated on "
    "the held-out patients of its validation record. Before clinical use a site must "
    "validate it on its own patients (dipro-fhir evaluate) and run it in shadow mode."
)


def train_from_settings(
    settings: Settings,
    patient_ids: Sequence[str],
    out: Path,
    *,
    name: str,
    version: str,
    epochs: int,
    patience: int = 8,
    config: DiproConfig | None = None,
    training_data: str = "patients from the configured FHIR source",
    intended_use: str = SITE_INTENDED_USE,
    site: str = "",
    seed: int = 23,
    progress: Callable[[str], None] | None = None,
    patients_read: Callable[[int, int], None] | None = None,
) -> TrainingOutcome:
    """Train a checkpoint on ``patient_ids`` (all patients with a finished stay if empty).

    ``progress`` is called with a line per stage, ``patients_read`` with the patients read so
    far and their total while the examples are extracted.

    Raises:
        TrainingError: Too few labelled patients, or the network did not learn.
    """
    config = config or default_config()
    options = extract_options(settings, crop_size=config.crop_size, max_cxrs=config.max_cxrs)
    fhir = connections.fhir_source(settings)
    ids = list(patient_ids) or list(fhir.finished_stay_patients(datetime.now(UTC)))
    counts = ExampleCounts()
    examples = stream_examples(
        fhir,
        connections.image_source(settings.dicomweb),
        ids,
        options,
        counts,
        None if patients_read is None else lambda done: patients_read(done, len(ids)),
    )
    plan = TrainingPlan(
        config=config,
        name=name,
        version=version,
        training_data=training_data,
        intended_use=intended_use,
        source=describe_source(settings, site),
        epochs=epochs,
        patience=patience,
        seed=seed,
    )
    return train_checkpoint(examples, counts, out, plan, progress)
