"""The validation gate: only a checkpoint validated on held-out patients, beating the
prevalence and meeting the site's minimums, may score; planning and the CLI refuse the rest
with one line naming the figure."""

from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dipro.checkpoint import ModelCard, read_card
from dipro_fhir.core.settings import ModelSettings
from dipro_fhir.scoring.gate import ValidationGateError, check_validation, validation_problems
from dipro_fhir.training.demo_checkpoint import PACKAGED
from tests.checkpoints import write_untrained_checkpoint


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return read_card(PACKAGED)


def _with(card: ModelCard, path: tuple[str, ...], value: Any) -> ModelCard:
    record = copy.deepcopy(card.validation)
    node = record
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return dataclasses.replace(card, validation=record)


def test_the_shipped_demo_checkpoint_passes_the_default_gate(card: ModelCard) -> None:
    assert validation_problems(card, ModelSettings()) == []


def test_a_checkpoint_without_validation_is_refused(card: ModelCard) -> None:
    problems = validation_problems(dataclasses.replace(card, validation={}), ModelSettings())
    assert len(problems) == 1
    assert "no validation record" in problems[0]


def test_a_validation_of_other_weights_is_refused(card: ModelCard) -> None:
    other = dataclasses.replace(card, weights_sha256="0" * 64)
    assert validation_problems(other, ModelSettings()) == [
        "the validation record is of other weights than these"
    ]


def test_too_few_validation_patients_are_refused(card: ModelCard) -> None:
    few = _with(card, ("patients", "examples"), 11)
    assert "validated on 11 patients" in validation_problems(few, ModelSettings())[0]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ("mortality", "auroc", "low"),
            0.48,
            "mortality auroc (lower 95 % bound) 0.480 is not > 0.500",
        ),
        (("mortality", "auroc", "value"), 0.65, "MIN_MORTALITY_AUROC"),
        (("mortality", "ece", "value"), 0.2, "mortality ece 0.200 is not <= 0.100"),
        (("mortality", "brier", "value"), 0.5, "the training prevalence's"),
        (("los", "accuracy", "value"), 0.1, "los accuracy 0.100 is not >"),
        (("progression", "auroc", "low"), 0.45, "progression auroc (lower 95 % bound)"),
    ],
)
def test_a_failing_figure_is_named_with_its_value_and_limit(
    card: ModelCard, path: tuple[str, ...], value: float, expected: str
) -> None:
    bad = _with(card, ("models", "dipro", *path), value)
    problems = validation_problems(bad, ModelSettings())
    assert len(problems) == 1
    assert expected in problems[0]


def test_site_minimums_come_from_the_settings(card: ModelCard) -> None:
    auroc = card.validation["models"]["dipro"]["mortality"]["auroc"]["value"]
    strict = ModelSettings(min_mortality_auroc=min(auroc + 0.01, 1.0))
    with pytest.raises(ValidationGateError, match="DIPRO_MODEL__MIN_MORTALITY_AUROC"):
        check_validation(card, strict, PACKAGED)


def test_a_task_without_figures_is_refused(card: ModelCard) -> None:
    record = copy.deepcopy(card.validation)
    del record["models"]["dipro"]["los"]
    problems = validation_problems(dataclasses.replace(card, validation=record), ModelSettings())
    assert problems == ["no validation figures for los"]


def test_score_refuses_an_untrained_checkpoint_in_one_line(tmp_path: Path) -> None:
    checkpoint = write_untrained_checkpoint(tmp_path / "checkpoint")
    environ = {
        "DIPRO_FHIR__NDJSON_DIR": str(tmp_path / "nothing"),
        "DIPRO_DICOMWEB__FOLDER": str(tmp_path / "nothing"),
        "DIPRO_MODEL__CHECKPOINT": str(checkpoint),
        "DIPRO_STORE__URL": f"sqlite:///{tmp_path / 'results.sqlite'}",
        "PATH": str(Path(sys.executable).parent),
    }
    as_of = datetime(2026, 11, 24, 2, tzinfo=UTC).isoformat()
    done = subprocess.run(
        [sys.executable, "-m", "dipro_fhir.cli", "-q", "score", "--as-of", as_of],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
        timeout=300,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert "refused by the validation gate: no validation record" in lines[0]
    assert "Traceback" not in done.stderr


def test_the_shipped_card_says_what_it_was_validated_on(card: ModelCard) -> None:
    patients = card.validation["patients"]
    assert patients["examples"] >= 100
    assert "source" in patients
    assert "patient_id" not in json.dumps(card.validation)


def test_check_says_whether_the_checkpoint_may_score_and_where_scores_go(tmp_path: Path) -> None:
    from dipro_fhir.core.settings import Settings, WriteBackSettings
    from dipro_fhir.run.checks import run_checks
    from tests.checkpoints import write_tiny_checkpoint

    def model_check(checkpoint: Path, shadow: bool = False) -> tuple[bool, str]:
        settings = Settings(
            model=ModelSettings(checkpoint=checkpoint),
            writeback=WriteBackSettings(shadow=shadow),
        )
        return {name: (ok, detail) for name, ok, detail in run_checks(settings)}["model"]

    refused = model_check(write_untrained_checkpoint(tmp_path / "untrained"))
    assert refused[0] is False
    assert "validation gate" in refused[1]
    validated = write_tiny_checkpoint(tmp_path / "validated", name="dipro-site", version="2")
    ok, detail = model_check(validated)
    assert ok
    assert "held-out patients; live" in detail
    assert model_check(validated, shadow=True)[1].endswith("shadow mode: results database only")
