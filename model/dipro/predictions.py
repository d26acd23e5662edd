"""Held-out predictions with their labels, the constant (prevalence) predictor, and the
per-task validation losses that select a training epoch.

A task's validation loss is its mean negative log-likelihood (binary cross-entropy for
mortality, cross-entropy for the length-of-stay bins and for each labelled progression
finding), divided by the loss of predicting the *training* split's class frequencies. A
ratio under 1 means the network knows more than the prevalence; averaging the ratios gives
every task with labels the same say whatever its scale. Unlike a validation F1 or AUROC of a
few dozen patients, the likelihood moves smoothly from epoch to epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from dipro.batch import DiproBatch, DiproTargets
from dipro.network import DiPro
from dipro.scoring import score
from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_IGNORE

if TYPE_CHECKING:
    from dipro.calibration import Calibration

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Example = tuple[DiproBatch, DiproTargets]
_EPS = 1e-7


@dataclass(frozen=True, slots=True)
class Predictions:
    """Probabilities and labels per task, over all patients of a split (CPU arrays).

    Attributes:
        mortality: float [M] probability of death, or None without a mortality head.
        mortality_labels: float [M] in {0, 1}.
        los: float [M, 4] probabilities of ``vocab.LOS_BINS``, or None.
        los_labels: int [M], -1 where unknown.
        progression: float [M, K, 3], or None.
        progression_labels: int [M, K], ``PROGRESSION_IGNORE`` where unlabelled or where the
            patient had no CXR pair (nothing to grade, reference §3.1).
    """

    mortality: FloatArray | None
    mortality_labels: FloatArray
    los: FloatArray | None
    los_labels: IntArray
    progression: FloatArray | None
    progression_labels: IntArray


def predict(
    model: DiPro, data: Iterable[Example], calibration: Calibration | None = None
) -> Predictions:
    """Score every batch of ``data`` and keep probabilities next to the labels.

    Args:
        model: The network, on its device.
        data: ``(batch, targets)`` pairs.
        calibration: Applied to the probabilities when given.
    """
    parts: dict[str, list[npt.NDArray[np.generic]]] = {
        k: [] for k in ("m", "my", "l", "ly", "p", "py")
    }
    for batch, targets in data:
        result = score(model, batch, calibration=calibration)
        labels = targets.progression.cpu().clone()
        labels[~result.used_pairs] = PROGRESSION_IGNORE
        parts["py"].append(labels.numpy())
        parts["my"].append(targets.mortality.cpu().numpy())
        parts["ly"].append(targets.los.cpu().numpy())
        if result.progression is not None:
            parts["p"].append(result.progression.numpy())
        if result.mortality is not None:
            parts["m"].append(result.mortality.numpy())
        if result.los is not None:
            parts["l"].append(result.los.numpy())

    def joined(key: str) -> FloatArray | None:
        return np.concatenate(parts[key]).astype(np.float64) if parts[key] else None

    def labels_of(key: str, shape: tuple[int, ...]) -> IntArray:
        found = np.concatenate(parts[key]) if parts[key] else np.zeros(shape)
        return found.astype(np.int64)

    return Predictions(
        mortality=joined("m"),
        mortality_labels=labels_of("my", (0,)).astype(np.float64),
        los=joined("l"),
        los_labels=labels_of("ly", (0,)),
        progression=joined("p"),
        progression_labels=labels_of("py", (0, len(FINDINGS))),
    )


@dataclass(frozen=True, slots=True)
class Prevalence:
    """Class frequencies of a training split: the constant predictor every model must beat.

    Attributes:
        mortality: Share of deaths (None without labels).
        los: Share of each length-of-stay bin (None without labels).
        progression: Per finding, the shares of worsened / improved / no change (None for a
            finding without labels).
        counts: Labels per task.
    """

    mortality: float | None
    los: tuple[float, ...] | None
    progression: tuple[tuple[float, ...] | None, ...]
    counts: dict[str, int]

    @classmethod
    def from_targets(cls, targets: Iterable[DiproTargets]) -> Prevalence:
        """Count the labels of a split (unknown labels skipped)."""
        deaths = alive = 0.0
        los = np.zeros(len(LOS_BINS))
        prog = np.zeros((len(FINDINGS), 3))
        for target in targets:
            deaths += float(target.mortality.sum())
            alive += float((1 - target.mortality).sum())
            known = target.los[target.los >= 0]
            los += np.bincount(known.cpu().numpy(), minlength=len(LOS_BINS))[: len(LOS_BINS)]
            labels = target.progression.cpu().numpy()
            for k in range(len(FINDINGS)):
                column = labels[:, k]
                prog[k] += np.bincount(column[column != PROGRESSION_IGNORE], minlength=3)[:3]
        return cls.from_counts(deaths, alive, los, prog)

    @classmethod
    def from_predictions(cls, pred: Predictions) -> Prevalence:
        """Count the labels of a set of predictions (the training split's)."""
        known = pred.los_labels[pred.los_labels >= 0]
        prog = np.zeros((len(FINDINGS), 3))
        for k in range(len(FINDINGS)):
            column = pred.progression_labels[:, k]
            prog[k] = np.bincount(column[column != PROGRESSION_IGNORE], minlength=3)[:3]
        deaths = float(pred.mortality_labels.sum())
        return cls.from_counts(
            deaths,
            float(pred.mortality_labels.size) - deaths,
            np.bincount(known, minlength=len(LOS_BINS))[: len(LOS_BINS)].astype(np.float64),
            prog,
        )

    @classmethod
    def from_counts(
        cls, deaths: float, alive: float, los: FloatArray, progression: FloatArray
    ) -> Prevalence:
        """Shares from label counts (mortality, LoS bins, progression ``[K, 3]``)."""
        n_los = float(los.sum())
        return cls(
            mortality=deaths / (deaths + alive) if deaths + alive > 0 else None,
            los=tuple(float(v) for v in los / n_los) if n_los > 0 else None,
            progression=tuple(
                tuple(float(v) for v in row / row.sum()) if row.sum() > 0 else None
                for row in progression
            ),
            counts={
                "mortality": int(deaths + alive),
                "los": int(n_los),
                "progression": int(progression.sum()),
            },
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form (for the model card and the baseline file)."""
        return {
            "mortality": self.mortality,
            "los": None if self.los is None else list(self.los),
            "progression": [None if p is None else list(p) for p in self.progression],
            "counts": dict(self.counts),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Prevalence:
        """Read :meth:`to_json`'s form."""
        mortality = data.get("mortality")
        los = data.get("los")
        progression = data.get("progression") or []
        counts = data.get("counts") or {}
        return cls(
            mortality=None if mortality is None else float(mortality),
            los=None if not isinstance(los, list) else tuple(float(v) for v in los),
            progression=tuple(
                None if p is None else tuple(float(v) for v in p) for p in progression
            ),
            counts={str(k): int(v) for k, v in counts.items()},
        )

    def predictions_like(self, pred: Predictions) -> Predictions:
        """The constant predictor's probabilities for the patients of ``pred``."""
        m = pred.mortality_labels.size
        mortality = None if self.mortality is None else np.full(m, self.mortality)
        los = None if self.los is None else np.tile(np.asarray(self.los), (m, 1))
        uniform = (1.0 / 3.0,) * 3
        table = np.asarray([p if p is not None else uniform for p in self.progression])
        progression = np.tile(table[None], (m, 1, 1)) if self.progression else None
        return dataclasses.replace(pred, mortality=mortality, los=los, progression=progression)


def task_nll(pred: Predictions) -> dict[str, float]:
    """Mean negative log-likelihood per task with labels (tasks without labels are absent)."""
    out: dict[str, float] = {}
    if pred.mortality is not None and pred.mortality_labels.size:
        p = np.clip(pred.mortality, _EPS, 1 - _EPS)
        y = pred.mortality_labels
        out["mortality"] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    known = pred.los_labels >= 0
    if pred.los is not None and known.any():
        chosen = pred.los[known, pred.los_labels[known]]
        out["los"] = float(-np.mean(np.log(np.clip(chosen, _EPS, 1.0))))
    labelled = pred.progression_labels != PROGRESSION_IGNORE
    if pred.progression is not None and labelled.any():
        rows, findings = np.nonzero(labelled)
        chosen = pred.progression[rows, findings, pred.progression_labels[rows, findings]]
        out["progression"] = float(-np.mean(np.log(np.clip(chosen, _EPS, 1.0))))
    return out


def loss_ratios(pred: Predictions, prevalence: Prevalence) -> dict[str, float]:
    """Per task with labels: the model's NLL over the training prevalence's NLL."""
    model = task_nll(pred)
    constant = task_nll(prevalence.predictions_like(pred))
    return {t: model[t] / max(constant[t], _EPS) for t in model if t in constant}


def labelled_tasks(prevalence: Prevalence) -> tuple[str, ...]:
    """Tasks with at least one label, in ``vocab.TASKS`` order."""
    have = {
        "progression": any(p is not None for p in prevalence.progression),
        "mortality": prevalence.mortality is not None,
        "los": prevalence.los is not None,
    }
    return tuple(t for t in ("progression", "mortality", "los") if have[t])
