"""Post-hoc calibration of DiPro's probabilities, fitted on the validation split.

A risk written into ``RiskAssessment.prediction`` is read as a probability, and its
qualitative band (moderate, high) follows from it, so it must mean what it says. Training
losses (class weights, the auxiliary terms) and early stopping leave a network's
probabilities shifted; a small map fitted afterwards on held-out patients puts them back
(Guo et al. 2017, "On calibration of modern neural networks"):

* mortality: Platt scaling, ``sigmoid(a * logit(p) + b)``;
* length of stay and each progression finding: one temperature and a bias per class on the
  log-probabilities, ``softmax(s * log(p) + bias)`` (vector scaling with a shared
  temperature: 1 + C parameters).

Each map is fitted by L-BFGS on the negative log-likelihood with a weak pull towards the
identity (so a task with few labels stays close to the raw network), and is the identity
when a task has fewer than :data:`MIN_LABELS` labels or only one class. Maps are monotone in
the network's score for a binary task, so a mortality AUROC does not change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from dipro.predictions import Predictions
from dipro.vocab import PROGRESSION_IGNORE

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Fewer labels than this: the task keeps the identity map.
MIN_LABELS: Final[int] = 20
#: Weight of the pull towards the identity (per label, so it fades with more data).
IDENTITY_PULL: Final[float] = 1.0
_EPS: Final[float] = 1e-6


@dataclass(frozen=True, slots=True)
class BinaryScaling:
    """Platt scaling of one binary probability: ``sigmoid(scale * logit(p) + shift)``."""

    scale: float = 1.0
    shift: float = 0.0

    def apply(self, prob: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities of ``prob`` (any shape)."""
        p = prob.float().clamp(_EPS, 1.0 - _EPS)
        return torch.sigmoid(self.scale * torch.logit(p) + self.shift)


@dataclass(frozen=True, slots=True)
class ClassScaling:
    """Temperature and class biases: ``softmax(scale * log(p) + bias)`` over the last axis."""

    scale: float = 1.0
    bias: tuple[float, ...] = ()

    def apply(self, prob: torch.Tensor) -> torch.Tensor:
        """Calibrated probabilities of ``prob`` ``[..., C]``."""
        logp = torch.log(prob.float().clamp_min(_EPS))
        bias = torch.tensor(self.bias or (0.0,) * prob.shape[-1], dtype=torch.float32)
        return torch.softmax(self.scale * logp + bias.to(prob.device), dim=-1)


@dataclass(frozen=True, slots=True)
class Calibration:
    """The calibration maps of a checkpoint's tasks (None: the task is left as it is).

    Attributes:
        mortality: Platt scaling of the death probability.
        los: Scaling of the length-of-stay bins.
        progression: One scaling per finding (``vocab.FINDINGS`` order).
        fitted_on: Labels each map was fitted on, per task (for the model card).
    """

    mortality: BinaryScaling | None = None
    los: ClassScaling | None = None
    progression: tuple[ClassScaling, ...] | None = None
    fitted_on: tuple[tuple[str, int], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON form for the model card (``ModelCard.calibration``)."""
        return {
            "kind": "dipro/calibration/1",
            "method": "Platt (mortality); temperature + class bias (los, progression)",
            "mortality": None
            if self.mortality is None
            else {"scale": self.mortality.scale, "shift": self.mortality.shift},
            "los": None if self.los is None else _class_json(self.los),
            "progression": None
            if self.progression is None
            else [_class_json(s) for s in self.progression],
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        """Read :meth:`to_json`'s form; an empty dict is no calibration.

        Raises:
            ValueError: An unknown kind or malformed maps.
        """
        if not data:
            return cls()
        if data.get("kind") != "dipro/calibration/1":
            raise ValueError(f"unknown calibration kind {data.get('kind')!r}")
        mortality = data.get("mortality")
        los = data.get("los")
        progression = data.get("progression")
        return cls(
            mortality=None
            if mortality is None
            else BinaryScaling(float(mortality["scale"]), float(mortality["shift"])),
            los=None if los is None else _class_from_json(los),
            progression=None
            if progression is None
            else tuple(_class_from_json(s) for s in progression),
            fitted_on=tuple((str(k), int(v)) for k, v in data.get("fitted_on", {}).items()),
        )


def _class_json(scaling: ClassScaling) -> dict[str, Any]:
    return {"scale": scaling.scale, "bias": list(scaling.bias)}


def _class_from_json(data: dict[str, Any]) -> ClassScaling:
    return ClassScaling(float(data["scale"]), tuple(float(b) for b in data["bias"]))


def _minimise(params: torch.Tensor, loss_fn: Any) -> None:
    optimiser = torch.optim.LBFGS([params], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss: torch.Tensor = loss_fn()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]


def fit_binary(labels: FloatArray, prob: FloatArray) -> BinaryScaling | None:
    """Platt scaling fitted on ``labels`` {0, 1} and raw probabilities; None when too few
    labels or one class only (the raw probabilities are then kept)."""
    y = np.asarray(labels, dtype=np.float64)
    if y.size < MIN_LABELS or y.min() == y.max():
        return None
    z = torch.logit(torch.as_tensor(prob, dtype=torch.float64).clamp(_EPS, 1 - _EPS))
    target = torch.as_tensor(y)
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    pull = IDENTITY_PULL / y.size

    def loss() -> torch.Tensor:
        logits = params[0] * z + params[1]
        nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
        return nll + pull * ((params[0] - 1.0) ** 2 + params[1] ** 2)

    _minimise(params, loss)
    scale, shift = (float(v) for v in params.detach())
    return BinaryScaling(scale, shift)


def fit_classes(labels: IntArray, prob: FloatArray) -> ClassScaling | None:
    """Temperature and class biases fitted on ``labels`` ``[M]`` (class indices) and raw
    probabilities ``[M, C]``; None when too few labels or one class only."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size < MIN_LABELS or np.unique(y).size < 2:
        return None
    logp = torch.log(torch.as_tensor(prob, dtype=torch.float64).clamp_min(_EPS))
    target = torch.as_tensor(y)
    classes = logp.shape[1]
    params = torch.zeros(1 + classes, dtype=torch.float64)
    params[0] = 1.0
    params.requires_grad_(True)
    pull = IDENTITY_PULL / y.size

    def loss() -> torch.Tensor:
        logits = params[0] * logp + params[1:]
        nll = torch.nn.functional.cross_entropy(logits, target)
        return nll + pull * ((params[0] - 1.0) ** 2 + (params[1:] ** 2).sum())

    _minimise(params, loss)
    values = [float(v) for v in params.detach()]
    return ClassScaling(values[0], tuple(values[1:]))


def fit_calibration(pred: Predictions) -> Calibration:
    """Fit every task's map on validation predictions (raw, uncalibrated probabilities)."""
    fitted: list[tuple[str, int]] = []
    mortality = los = None
    progression: tuple[ClassScaling, ...] | None = None
    if pred.mortality is not None:
        mortality = fit_binary(pred.mortality_labels, pred.mortality)
        fitted.append(("mortality", int(pred.mortality_labels.size)))
    known = pred.los_labels >= 0
    if pred.los is not None:
        los = fit_classes(pred.los_labels[known], pred.los[known])
        fitted.append(("los", int(known.sum())))
    if pred.progression is not None:
        maps = []
        for k in range(pred.progression.shape[1]):
            labelled = pred.progression_labels[:, k] != PROGRESSION_IGNORE
            found = fit_classes(pred.progression_labels[labelled, k], pred.progression[labelled, k])
            maps.append(found or ClassScaling(1.0, (0.0, 0.0, 0.0)))
        progression = tuple(maps)
        fitted.append(("progression", int((pred.progression_labels != PROGRESSION_IGNORE).sum())))
    return Calibration(mortality, los, progression, tuple(fitted))
