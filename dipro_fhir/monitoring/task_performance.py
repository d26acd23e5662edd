"""Length-of-stay and progression performance of one window, beside the mortality figures.

The outcomes are those the monitor gathers with each mortality score
(:mod:`dipro_fhir.monitoring.outcomes`): the stay's length once it has ended, in
``dipro.vocab.LOS_BINS`` (a stay under two days has no bin, as in training), and the coded
change of the last CXR pair before the score. The predictions are the ``los`` and
``progression`` scores written beside that mortality score (same patient, as-of time and
version). As for mortality, the unit is the stay, judged once by its first score in the
window that has both the outcome and the prediction, and the bootstrap resamples stays; the
figures are the evaluation room's own (:func:`~dipro_fhir.evaluation.figures.los_figures`,
:func:`~dipro_fhir.evaluation.figures.progression_figures`). Figures (``metric`` names):

* ``los:stays`` (ended stays of two days or more with a prediction), ``los:accuracy``,
  ``los:macro_f1``, ``los:kappa`` with 95 % intervals;
* ``progression:stays`` (stays whose last pair before the score has a coded report),
  ``progression:labelled`` (findings coded), ``progression:auroc`` and
  ``progression:macro_f1`` over every coded finding, and ``progression:auroc:<finding>``
  per finding of ``dipro.vocab.FINDINGS``, with intervals.

A pair's report is known once it is written, whether the stay has ended or not, so
progression counts stays still open; length of stay counts only ended ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dipro.predictions import Predictions
from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_CLASSES, PROGRESSION_IGNORE
from dipro_fhir.evaluation.figures import los_figures, progression_figures
from dipro_fhir.monitoring.performance import Figure
from dipro_fhir.store.outcomes import LabelledScore

#: Task -> the figures :func:`task_window` reports with intervals.
LOS_METRICS: Final[tuple[str, ...]] = ("accuracy", "macro_f1", "kappa")
PROGRESSION_METRICS: Final[tuple[str, ...]] = (
    "auroc",
    "macro_f1",
    *(f"auroc:{f}" for f in FINDINGS),
)
Probabilities = Mapping[int, Mapping[str, float]]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _first_per_stay(
    scores: Sequence[LabelledScore], usable: Mapping[int, bool]
) -> list[LabelledScore]:
    chosen: dict[tuple[str, str | None], LabelledScore] = {}
    for score in scores:
        if usable.get(score.score_id):
            chosen.setdefault((score.patient_id, score.encounter_id), score)
    return list(chosen.values())


def _predictions(
    n: int,
    *,
    los: FloatArray | None = None,
    los_labels: IntArray | None = None,
    progression: FloatArray | None = None,
    progression_labels: IntArray | None = None,
) -> Predictions:
    """The evaluation room's predictions of one task over ``n`` stays."""
    return Predictions(
        mortality=None,
        mortality_labels=np.zeros(n, dtype=np.float64),
        los=los,
        los_labels=np.full(n, -1, dtype=np.int64) if los_labels is None else los_labels,
        progression=progression,
        progression_labels=(
            np.full((n, len(FINDINGS)), PROGRESSION_IGNORE, dtype=np.int64)
            if progression_labels is None
            else progression_labels
        ),
    )


def _figures(
    window: int, task: str, names: Sequence[str], found: Mapping[str, Any] | None
) -> list[Figure]:
    if not found:
        return []
    n = int(found["patients"])
    return [
        Figure(window, "", "", f"{task}:{name}", _number(found[name]["value"]),
               _number(found[name]["low"]), _number(found[name]["high"]), n)
        for name in names
    ]  # fmt: skip


def los_window(
    scores: Sequence[LabelledScore], los: Probabilities, window: int, resamples: int, seed: int
) -> list[Figure]:
    """Length-of-stay figures of the window's ended stays (module docstring)."""
    usable = {
        s.score_id: s.outcome is not None
        and s.outcome.status == "known"
        and s.outcome.los_bin is not None
        and all(b in los.get(s.score_id, {}) for b in LOS_BINS)
        for s in scores
    }
    stays = _first_per_stay(scores, usable)
    out = [Figure(window, "", "", "los:stays", float(len(stays)), n=len(stays))]
    if not stays:
        return out
    pred = _predictions(
        len(stays),
        los=np.asarray([[los[s.score_id][b] for b in LOS_BINS] for s in stays], np.float64),
        los_labels=np.asarray([s.outcome.los_bin for s in stays if s.outcome], np.int64),
    )
    return out + _figures(window, "los", LOS_METRICS, los_figures(pred, resamples, seed))


def progression_window(
    scores: Sequence[LabelledScore],
    progression: Probabilities,
    window: int,
    resamples: int,
    seed: int,
) -> list[Figure]:
    """Progression figures of the window's stays with a coded pair (module docstring)."""
    codes = [f"{f}:{c}" for f in FINDINGS for c in PROGRESSION_CLASSES]
    usable = {
        s.score_id: s.outcome is not None
        and s.outcome.progression is not None
        and all(c in progression.get(s.score_id, {}) for c in codes)
        for s in scores
    }
    stays = _first_per_stay(scores, usable)
    labels = np.asarray(
        [s.outcome.progression for s in stays if s.outcome is not None], dtype=np.int64
    ).reshape(len(stays), len(FINDINGS))
    out = [
        Figure(window, "", "", "progression:stays", float(len(stays)), n=len(stays)),
        Figure(
            window,
            "",
            "",
            "progression:labelled",
            float((labels != PROGRESSION_IGNORE).sum()),
            n=len(stays),
        ),
    ]
    if not stays:
        return out
    probabilities = np.asarray(
        [[[progression[s.score_id][f"{f}:{c}"] for c in PROGRESSION_CLASSES] for f in FINDINGS]
         for s in stays],
        dtype=np.float64,
    )  # fmt: skip
    pred = _predictions(len(stays), progression=probabilities, progression_labels=labels)
    found = progression_figures(pred, resamples, seed)
    return out + _figures(window, "progression", PROGRESSION_METRICS, found)
