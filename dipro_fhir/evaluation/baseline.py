"""The logistic-regression baseline: what a simple model makes of the same extracted data.

A checkpoint is worth writing only if it does at least about as well as a linear model on EHR
summaries (:mod:`dipro_fhir.evaluation.summaries`) of the same patients. The baseline is
fitted on the checkpoint's own training split when the checkpoint is trained, its L2 penalty
chosen on the validation split by log-likelihood, and kept beside the weights
(``baseline.json``: plain numbers, no pickled code), so ``dipro-fhir evaluate`` compares both on
any later set of patients. One model per task: binary for mortality, multinomial for the
length-of-stay bins and for each progression finding (on its labelled pairs). Fitted with
L-BFGS in torch (already a dependency; scikit-learn is not).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from dipro.predictions import Predictions, Prevalence, task_nll
from dipro.stacking import choose_linear
from dipro.vocab import FINDINGS, PROGRESSION_IGNORE
from dipro_fhir.core.errors import ModelContractError
from dipro_fhir.evaluation.summaries import FEATURE_NAMES

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

BASELINE_FILE: Final[str] = "baseline.json"
BASELINE_KIND: Final[str] = "dipro-fhir/ehr-logistic/1"


@dataclass(frozen=True, slots=True)
class Linear:
    """One fitted linear model on standardised features: ``weights [F, C]``, ``bias [C]``
    (``C = 1``: a binary model, the logit of the positive class)."""

    weights: FloatArray
    bias: FloatArray
    penalty: float

    def probabilities(self, x: FloatArray) -> FloatArray:
        """Probabilities ``[M]`` (binary) or ``[M, C]``."""
        z = x @ self.weights + self.bias
        if self.weights.shape[1] == 1:
            return np.asarray(1.0 / (1.0 + np.exp(-z[:, 0])))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))


@dataclass(frozen=True, slots=True)
class EhrBaseline:
    """The fitted baseline of a checkpoint (module docstring).

    Attributes:
        mean, std: Standardisation of each feature (training split); NaN inputs become the
            mean.
        mortality, los: The task models (None: no labels to fit on).
        progression: One model per finding (None: too few labels).
        prevalence: The training split's label shares (the constant baseline).
    """

    mean: FloatArray
    std: FloatArray
    mortality: Linear | None
    los: Linear | None
    progression: tuple[Linear | None, ...]
    prevalence: Prevalence

    def standardise(self, features: FloatArray) -> FloatArray:
        """Features ``[M, F]`` with NaN imputed by the mean, then z-scored."""
        filled = np.where(np.isfinite(features), features, self.mean)
        return np.asarray((filled - self.mean) / self.std)

    def predict(self, features: FloatArray, labels: Predictions) -> Predictions:
        """The baseline's probabilities for patients with ``features`` ``[M, F]``, next to
        ``labels`` (their label arrays; its probabilities are ignored). A task or finding
        without a model gets the training prevalence."""
        x = self.standardise(features)
        constant = self.prevalence.predictions_like(labels)
        mortality = (
            constant.mortality if self.mortality is None else self.mortality.probabilities(x)
        )
        los = constant.los if self.los is None else self.los.probabilities(x)
        progression = constant.progression
        if progression is not None:
            progression = progression.copy()
            for k, model in enumerate(self.progression):
                if model is not None:
                    progression[:, k] = model.probabilities(x)
        return dataclasses.replace(labels, mortality=mortality, los=los, progression=progression)

    def save(self, directory: Path) -> Path:
        """Write ``baseline.json`` into ``directory`` atomically; returns its path."""
        path = directory / BASELINE_FILE
        tmp = directory / (BASELINE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.to_json()) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    def to_json(self) -> dict[str, Any]:
        """JSON form (plain lists of numbers)."""
        return {
            "kind": BASELINE_KIND,
            "features": list(FEATURE_NAMES),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "mortality": _linear_json(self.mortality),
            "los": _linear_json(self.los),
            "progression": [_linear_json(m) for m in self.progression],
            "prevalence": self.prevalence.to_json(),
        }


def _linear_json(model: Linear | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {"weights": model.weights.tolist(), "bias": model.bias.tolist(), "l2": model.penalty}


def _linear(data: dict[str, Any] | None) -> Linear | None:
    if data is None:
        return None
    return Linear(np.asarray(data["weights"]), np.asarray(data["bias"]), float(data["l2"]))


def load_baseline(directory: Path) -> EhrBaseline:
    """Read ``baseline.json`` of a checkpoint folder.

    Raises:
        ModelContractError: The file is missing, unreadable, or for other features.
    """
    path = directory / BASELINE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelContractError(
            f"checkpoint {directory}: no readable {BASELINE_FILE} (train the checkpoint "
            "with `dipro-fhir train`, which fits the baseline beside the weights)"
        ) from exc
    if data.get("kind") != BASELINE_KIND or tuple(data.get("features", ())) != FEATURE_NAMES:
        raise ModelContractError(f"checkpoint {directory}: {BASELINE_FILE} is of another kind")
    return EhrBaseline(
        mean=np.asarray(data["mean"]),
        std=np.asarray(data["std"]),
        mortality=_linear(data["mortality"]),
        los=_linear(data["los"]),
        progression=tuple(_linear(m) for m in data["progression"]),
        prevalence=Prevalence.from_json(data["prevalence"]),
    )


def _choose(
    train: tuple[FloatArray, IntArray], val: tuple[FloatArray, IntArray], classes: int
) -> Linear | None:
    """The model of the penalty with the lowest validation NLL (None: too few labels), by the
    stack's own fit (:func:`dipro.stacking.choose_linear`)."""
    (xt, yt), (xv, yv) = train, val
    fit = choose_linear(
        (torch.as_tensor(xt), torch.as_tensor(yt)),
        (torch.as_tensor(xv), torch.as_tensor(yv)),
        classes,
    )
    if fit is None:
        return None
    w = fit[0].numpy()
    return Linear(w[:-1].copy(), w[-1].copy(), fit[1])


def fit_baseline(
    train_features: FloatArray,
    train_labels: Predictions,
    val_features: FloatArray,
    val_labels: Predictions,
) -> EhrBaseline:
    """Fit every task's model on the training split, the penalty chosen on validation.

    Args:
        train_features: ``[M, F]`` summaries of the training patients.
        train_labels: Their labels (probabilities ignored).
        val_features: ``[M', F]`` summaries of the validation patients.
        val_labels: Their labels.
    """
    mean = np.nanmean(np.where(np.isfinite(train_features), train_features, np.nan), axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    filled = np.where(np.isfinite(train_features), train_features, mean)
    std = filled.std(axis=0)
    std = np.where(std > 1e-9, std, 1.0)
    empty = EhrBaseline(mean, std, None, None, (), Prevalence.from_predictions(train_labels))
    xt, xv = empty.standardise(train_features), empty.standardise(val_features)
    mortality = _choose(
        (xt, train_labels.mortality_labels.astype(np.int64)),
        (xv, val_labels.mortality_labels.astype(np.int64)),
        1,
    )
    known_t, known_v = train_labels.los_labels >= 0, val_labels.los_labels >= 0
    los = _choose(
        (xt[known_t], train_labels.los_labels[known_t]),
        (xv[known_v], val_labels.los_labels[known_v]),
        4,
    )
    progression = []
    for k in range(len(FINDINGS)):
        lt = train_labels.progression_labels[:, k] != PROGRESSION_IGNORE
        lv = val_labels.progression_labels[:, k] != PROGRESSION_IGNORE
        progression.append(
            _choose(
                (xt[lt], train_labels.progression_labels[lt, k]),
                (xv[lv], val_labels.progression_labels[lv, k]),
                3,
            )
        )
    return EhrBaseline(mean, std, mortality, los, tuple(progression), empty.prevalence)


def baseline_nll(
    baseline: EhrBaseline, features: FloatArray, labels: Predictions
) -> dict[str, float]:
    """Mean negative log-likelihood per task of the baseline (for logs and tests)."""
    return task_nll(baseline.predict(features, labels))
