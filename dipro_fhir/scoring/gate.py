"""The validation gate: a checkpoint scores only after it has shown, on held-out patients,
that it beats the simplest baseline and meets the site's minimums.

A score is a claim. The model card's ``validation`` record (written by the trainer for its
test split, or by ``dipro-fhir evaluate --record`` on a site's own patients; schema in
:mod:`dipro_fhir.evaluation.evaluate`) must:

* exist, and be of these weights (its ``weights_sha256`` is the card's);
* cover at least ``min_validation_patients`` patients;
* hold figures for every task the checkpoint scores, that beat the training prevalence: the
  lower end of the mortality and progression AUROC intervals above 0.5, a mortality Brier
  score below the prevalence's, a length-of-stay accuracy above the prevalence's (its
  commonest bin);
* meet the site's minimums (``DIPRO_MODEL__MIN_MORTALITY_AUROC``,
  ``..._MAX_MORTALITY_ECE``, ``..._MIN_LOS_ACCURACY``, ``..._MIN_PROGRESSION_AUROC``).

Otherwise planning and scoring stop with :class:`ValidationGateError`, whose one line names
the figure, its value and the limit. The gate holds in shadow mode too: shadow mode decides
where scores go, not whether an unvalidated model may make them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dipro.checkpoint import ModelCard
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.core.settings import ModelSettings

EVALUATION_KIND = "dipro-fhir/evaluation/1"


class ValidationGateError(ModelContractError):
    """The checkpoint has no validation record, or its figures fail the site's minimums."""


def _value(record: dict[str, Any], model: str, task: str, name: str, key: str = "value") -> Any:
    figure = record.get("models", {}).get(model, {}).get(task, {}).get(name)
    return figure.get(key) if isinstance(figure, dict) else None


def validation_problems(card: ModelCard, minimums: ModelSettings) -> list[str]:
    """Why ``card`` may not score (empty: it may), each as a short phrase."""
    record = card.validation
    if not record:
        return [
            "no validation record: evaluate it on held-out patients "
            "(dipro-fhir evaluate --checkpoint DIR --out DIR --record)"
        ]
    if record.get("kind") != EVALUATION_KIND:
        return [f"validation record of unknown kind {record.get('kind')!r}"]
    if record.get("checkpoint", {}).get("weights_sha256") != card.weights_sha256:
        return ["the validation record is of other weights than these"]
    patients = int(record.get("patients", {}).get("examples", 0))
    if patients < minimums.min_validation_patients:
        return [
            f"validated on {patients} patients < DIPRO_MODEL__MIN_VALIDATION_PATIENTS "
            f"{minimums.min_validation_patients}"
        ]
    problems: list[str] = []
    for task in card.tasks:
        if task not in record.get("models", {}).get("dipro", {}):
            problems.append(f"no validation figures for {task}")
        else:
            problems += _task_problems(record, task, minimums)
    return problems


#: (figure, "value" or "low" end of its interval, comparison, limit, what the limit is)
Check = tuple[str, str, str, float | None, str]
CHANCE = "chance"
PREVALENCE = "the training prevalence's"


def _checks(record: dict[str, Any], task: str, minimums: ModelSettings) -> list[Check]:
    if task == "mortality":
        return [
            ("auroc", "low", ">", 0.5, CHANCE),
            ("auroc", "value", ">=", minimums.min_mortality_auroc, "MIN_MORTALITY_AUROC"),
            ("ece", "value", "<=", minimums.max_mortality_ece, "MAX_MORTALITY_ECE"),
            ("brier", "value", "<", _value(record, "prevalence", task, "brier"), PREVALENCE),
        ]
    if task == "los":
        return [
            ("accuracy", "value", ">", _value(record, "prevalence", task, "accuracy"), PREVALENCE),
            ("accuracy", "value", ">=", minimums.min_los_accuracy, "MIN_LOS_ACCURACY"),
        ]
    return [
        ("auroc", "low", ">", 0.5, CHANCE),
        ("auroc", "value", ">=", minimums.min_progression_auroc, "MIN_PROGRESSION_AUROC"),
    ]


_PASSES = {
    ">": lambda v, limit: v > limit,
    ">=": lambda v, limit: v >= limit,
    "<": lambda v, limit: v < limit,
    "<=": lambda v, limit: v <= limit,
}


def _task_problems(record: dict[str, Any], task: str, minimums: ModelSettings) -> list[str]:
    problems = []
    for name, key, op, limit, source in _checks(record, task, minimums):
        figure = f"{task} {name}" + (" (lower 95 % bound)" if key == "low" else "")
        value = _value(record, "dipro", task, name, key)
        if value is None or limit is None:
            problems.append(f"{figure} missing")
        elif not _PASSES[op](value, limit):
            where = source if source in (CHANCE, PREVALENCE) else f"DIPRO_MODEL__{source}"
            problems.append(f"{figure} {value:.3f} is not {op} {limit:.3f} ({where})")
    return problems


def check_validation(card: ModelCard, minimums: ModelSettings, checkpoint: Path) -> None:
    """Raise :class:`ValidationGateError` unless ``card`` may score (module docstring)."""
    problems = validation_problems(card, minimums)
    if problems:
        raise ValidationGateError(
            f"checkpoint {checkpoint} ({card.name} {card.version}) refused by the validation "
            f"gate: {'; '.join(problems)}"
        )
