"""A checkpoint without an input reference gets one from finished stays, each read as the
nights of its stay saw it (the demo's way: its held-out synthetic cohort), written into its
model card; the monitor then compares nights with it from the first night on, and the
unmapped codes with the site's first nights. A reference read at the prediction point
(training's) is used only when the site asks for it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from dipro.checkpoint import hash_file, read_card
from dipro_fhir.core.settings import embedded_settings
from dipro_fhir.evaluation.reference import read_reference, record_input_reference
from dipro_fhir.monitoring.reference import Reference, choose_reference
from dipro_fhir.store.monitoring import NightlyRun
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.load import write_files
from tests.checkpoints import write_tiny_checkpoint
from tests.unit.monitoring.worlds import sqlite_store

PATIENTS = 24


def test_a_reference_computed_for_an_existing_checkpoint_lands_in_its_card(
    tmp_path: Path,
) -> None:
    cohort = tmp_path / "heldout"
    start = datetime(2026, 8, 1, tzinfo=UTC)
    write_files(generate_cohort(PATIENTS, seed=4242, start=start, id_prefix="held"), cohort,
                image_size=(96, 96))  # fmt: skip
    settings = embedded_settings(tmp_path)
    settings = settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": cohort}),
            "dicomweb": settings.dicomweb.model_copy(update={"folder": cohort / "dicom"}),
        }
    )
    checkpoint = write_tiny_checkpoint(tmp_path / "checkpoint")
    assert read_reference(read_card(checkpoint).validation) is None  # the shipped demo has none
    weights = hash_file(checkpoint / "weights.pt")

    entry = record_input_reference(settings, checkpoint, source="held-out synthetic cohort")

    card = read_card(checkpoint)
    assert card.validation["input_reference"] == entry
    assert card.validation["models"]  # the validation record is kept
    assert hash_file(checkpoint / "weights.pt") == weights == card.weights_sha256
    found = read_reference(card.validation)
    assert found is not None
    assert found.sampling == "nightly"
    profile = found.profile
    assert profile.patients > PATIENTS  # a stay is read once a day, as its nights saw it
    assert sum(found.scores) == profile.patients
    assert profile.coverage("heart_rate") == 1.0
    assert profile.coverage("height") < 0.9  # charted at admission: out of later windows

    # The monitor uses it on the first night; unmapped codes wait for the first nights.
    store = sqlite_store(tmp_path)
    tonight = NightlyRun("run-1", start, "dipro-test", "1", "success", {})
    chosen = choose_reference(settings, store.engine, [tonight], tonight, card.validation)
    assert isinstance(chosen, Reference)
    assert chosen.source == "card"
    assert chosen.inputs.profile == profile
    assert chosen.inputs.unmapped_codes is None

    # A reference read at the prediction point (training's) is used only when asked for.
    hour48 = {**card.validation, "input_reference": {**entry, "sampling": "prediction-point"}}
    assert isinstance(choose_reference(settings, store.engine, [tonight], tonight, hour48), str)
    asked = settings.model_copy(
        update={"monitor": settings.monitor.model_copy(update={"reference": "card"})}
    )
    chosen = choose_reference(asked, store.engine, [tonight], tonight, hour48)
    assert isinstance(chosen, Reference)
    assert chosen.source == "card"
