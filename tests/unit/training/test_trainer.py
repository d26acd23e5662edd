"""``dipro-fhir train`` on synthetic patients kept as files: it learns, calibrates, validates on
its own test split and saves the card, the baseline and the evaluation; without coded CXR
reports it trains mortality and length of stay only; a network that does not learn is
refused and nothing is saved."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from dipro.checkpoint import read_card
from dipro.config import DiproConfig, default_config
from dipro.network import DiPro
from dipro.train import seed_everything
from dipro_fhir.core.errors import TrainingError
from dipro_fhir.core.settings import Settings, embedded_settings
from dipro_fhir.evaluation.baseline import load_baseline
from dipro_fhir.synth.cohorts import cohort_patient_ids
from dipro_fhir.training.from_source import train_from_settings
from dipro_fhir.training.trainer import TrainingOutcome

PATIENTS = 160
SEED = 23

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Finished synthetic ICU stays as FHIR NDJSON + DICOM files (128 px films)."""
    from datetime import UTC, datetime

    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import write_files

    out = tmp_path_factory.mktemp("train") / "cohort"
    start = datetime(2026, 8, 1, tzinfo=UTC)
    write_files(
        generate_cohort(PATIENTS, seed=5, start=start, id_prefix="t"), out, image_size=(128, 128)
    )
    return out


def _settings(cohort: Path) -> Settings:
    settings = embedded_settings(cohort.parent)
    return settings.model_copy(
        update={
            "fhir": settings.fhir.model_copy(update={"ndjson_dir": cohort}),
            "dicomweb": settings.dicomweb.model_copy(update={"folder": cohort / "dicom"}),
        }
    )


def _train(
    cohort: Path, out: Path, *, epochs: int = 25, config: DiproConfig | None = None
) -> TrainingOutcome:
    """Train on every patient of ``cohort`` with the tests' seed."""
    return train_from_settings(
        _settings(cohort), cohort_patient_ids(cohort), out, name="t", version="1",
        epochs=epochs, config=config, seed=SEED,
    )  # fmt: skip


def test_training_learns_calibrates_and_saves_card_baseline_and_test_figures(
    cohort: Path, tmp_path: Path
) -> None:
    out = tmp_path / "checkpoint"
    outcome = _train(cohort, out)
    assert outcome.tasks == ("progression", "mortality", "los")
    assert sum(outcome.split_counts.values()) == PATIENTS
    assert {p.name for p in out.iterdir()} == {
        "weights.pt",
        "model_card.json",
        "baseline.json",
        "evaluation.json",
        "evaluation.html",
    }
    card = read_card(out)
    assert card.calibration["mortality"] is not None
    assert (
        card.metrics["validation_loss_over_prevalence"]
        < card.metrics["untrained_loss_over_prevalence"]
    )
    # The card's validation is the test split: patients never used to fit or select.
    record = card.validation
    assert record["patients"]["examples"] == outcome.split_counts["test"]
    assert record["checkpoint"]["weights_sha256"] == card.weights_sha256
    assert set(record["models"]) == {"dipro", "ehr_only", "last_pair", "logistic", "prevalence"}
    assert json.loads((out / "evaluation.json").read_text()) == record
    # The reference of the inputs the monitor compares nights with: the same test patients.
    reference = record["input_reference"]
    assert reference["sampling"] == "prediction-point"
    assert reference["profile"]["patients"] == outcome.split_counts["test"]
    assert sum(reference["scores"]) == outcome.split_counts["test"]
    assert reference["profile"]["variable_patients"]["heart_rate"] == outcome.split_counts["test"]
    assert load_baseline(out).mortality is not None
    # Not the initial weights: a fresh network of the same seed differs.
    seed_everything(SEED)
    fresh = DiPro(card.config).state_dict()
    saved = torch.load(out / "weights.pt", weights_only=True)
    assert any(not torch.equal(fresh[k], saved[k]) for k in fresh)


def test_without_coded_reports_progression_is_left_out_and_the_rest_trained(
    cohort: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "cohort"
    shutil.copytree(cohort, bare, ignore=shutil.ignore_patterns("DiagnosticReport.ndjson"))
    out = tmp_path / "checkpoint"
    outcome = _train(bare, out)
    assert outcome.tasks == ("mortality", "los")
    assert "progression" in outcome.left_out
    card = read_card(out)
    assert card.tasks == ("mortality", "los")
    assert set(card.validation["models"]["dipro"]) == {"mortality", "los"}
    assert "progression not trained" in card.training_data


def test_a_network_that_does_not_learn_is_refused_and_nothing_is_saved(
    cohort: Path, tmp_path: Path
) -> None:
    out = tmp_path / "checkpoint"
    frozen = dataclasses.replace(default_config(), learning_rate=0.0)
    with pytest.raises(TrainingError, match="nothing saved: no epoch beat the untrained network"):
        _train(cohort, out, epochs=3, config=frozen)
    assert not out.exists()
    assert not any(p.name.startswith(".checkpoint.training-") for p in tmp_path.iterdir())


def test_too_few_patients_is_refused_with_the_counts(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "checkpoint"
    with pytest.raises(TrainingError, match="too few labelled patients"):
        train_from_settings(
            _settings(cohort), cohort_patient_ids(cohort)[:6], out, name="t", version="1", epochs=2
        )
    assert not out.exists()


def test_an_occupied_destination_is_never_overwritten(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "checkpoint"
    out.mkdir()
    (out / "weights.pt").write_text("a site's file")
    with pytest.raises(FileExistsError):
        train_from_settings(_settings(cohort), ["t-000000"], out, name="t", version="1", epochs=1)
    assert (out / "weights.pt").read_text() == "a site's file"


def test_with_the_summary_path_the_network_is_stacked_with_a_fitted_regression(
    cohort: Path, tmp_path: Path
) -> None:
    out = tmp_path / "checkpoint"
    config = dataclasses.replace(default_config(), summary_path=True)
    _train(cohort, out, config=config)
    card = read_card(out)
    assert card.config.summary_path is True
    saved = torch.load(out / "weights.pt", weights_only=True)
    rows = saved["summary.linear.weight"]  # [outputs, features]: the regression, times its weight
    model = DiPro(card.config)
    model.load_state_dict(saved)  # the saved network is the one scoring builds
    assert rows.shape[0] == model.heads.num_outputs
    assert bool((rows != 0).any()), "no task took any of the regression"
    mix = {k: v for k, v in card.metrics.items() if k.startswith("stacking/")}
    assert {"stacking/mortality/regression_weight", "stacking/los/regression_weight"} <= set(mix)
    assert all(0.0 <= w <= 1.0 for w in mix.values())
    assert any(w > 0.0 for w in mix.values())  # the card says what the weights show
    assert set(card.validation["models"]) == {
        "dipro",
        "ehr_only",
        "last_pair",
        "logistic",
        "prevalence",
    }
