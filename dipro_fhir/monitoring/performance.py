"""Performance of one model version over a window of nights, overall and by subgroup.

The unit is the *stay*: a patient scored on five nights is one stay, judged once, by its
first score in the window (the earliest warning the window gave; seismometer's "first"
aggregation), so the bootstrap resamples stays, not nights. Only stays whose outcome is
known count; open ones are counted as pending. Figures (``metric`` names):

* counts: ``scores`` (patient-nights), ``stays``, ``stays_known``, ``stays_pending``,
  ``stays_missing``, ``deaths``; ``stays_pending_beyond_horizon``: the pending stays open
  longer than the site's horizon (``DIPRO_MONITOR__PENDING_HORIZON_DAYS``) when the monitor
  last looked, counted apart (and still among ``stays_pending``: never guessed);
* discrimination and calibration, with bootstrap 95 % intervals, by the evaluation room's own
  code (:func:`~dipro_fhir.evaluation.figures.mortality_figures`): ``auroc``, ``auprc``,
  ``brier``, ``ece``, and ``observed_rate`` / ``mean_predicted``; observed against predicted
  by decile of predicted risk (``decile<k>:predicted``, ``decile<k>:observed``);
  ``ece_if_calibrated``: the 95th percentile of the ECE a perfectly calibrated model would
  show on these stays (outcomes drawn from the risks themselves: consistency resampling,
  Bröcker and Smith 2007). ECE is biased upwards on few stays: a calibrated model's ECE on 35
  stays is about 0.13, 0.2 at the 95th percentile; a calibration alert needs the ECE above it;
* at the site's thresholds (``DIPRO_WRITEBACK__MODERATE_RISK_AT`` / ``HIGH_RISK_AT``):
  ``alert_rate:<level>`` (share of scores at or above it), ``ppv:<level>`` and
  ``sensitivity:<level>`` (a stay is alerted when any of its scores in the window reached it;
  Wilson 95 % intervals);
* ``lead_time_h``: for deaths with a high-risk score, hours from the first such score to
  the death (median; ``low``/``high`` are the quartiles);
* by subgroup (sex, age band, race/ethnicity, care unit, EHR-only vs CXR-pair path):
  ``stays``, ``deaths``, ``auroc`` (with interval), ``brier``, ``ece``, and
  ``auroc_rest``: everyone else's AUROC, the comparison a gap is judged by.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from dipro.metrics import expected_calibration_error, roc_auc
from dipro.predictions import Predictions
from dipro.vocab import FINDINGS, PROGRESSION_IGNORE
from dipro_fhir.core.risk import RiskThresholds
from dipro_fhir.evaluation.figures import mortality_figures, subgroup_figures
from dipro_fhir.store.outcomes import LabelledScore

FloatArray = npt.NDArray[np.float64]
#: Subgroup attributes, in the order reports show them.
ATTRIBUTES: Final[tuple[str, ...]] = ("sex", "age_band", "race_ethnicity", "unit", "path")
DECILES: Final[int] = 10
_Z95: Final[float] = 1.959964


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of a window (``attribute`` and ``group`` ``''``: everyone)."""

    window_days: int
    attribute: str
    group: str
    metric: str
    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0


@dataclass(frozen=True, slots=True)
class Stays:
    """One window's stays of known outcome, each by its first score in the window.

    Attributes:
        probability: float ``[S]`` the first score's risk of death.
        died: float ``[S]`` in ``{0, 1}``.
        alerted: Level -> bool ``[S]``: any score of the stay at or above that level.
        lead_time_h: float ``[S]``: hours from the first high-risk score to death (NaN
            where there is none).
        groups: Attribute -> group name per stay.
    """

    probability: FloatArray
    died: FloatArray
    alerted: dict[str, npt.NDArray[np.bool_]]
    lead_time_h: FloatArray
    groups: dict[str, list[str]]

    @property
    def size(self) -> int:
        """Stays of known outcome."""
        return int(self.died.size)

    def predictions(self) -> Predictions:
        """The stays as the evaluation room's predictions (mortality only)."""
        n = self.size
        return Predictions(
            mortality=self.probability,
            mortality_labels=self.died,
            los=None,
            los_labels=np.full(n, -1, dtype=np.int64),
            progression=None,
            progression_labels=np.full((n, len(FINDINGS)), PROGRESSION_IGNORE, dtype=np.int64),
        )


def _stay_key(score: LabelledScore) -> tuple[str, str | None]:
    return score.patient_id, score.encounter_id


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def gather_stays(scores: Sequence[LabelledScore], thresholds: RiskThresholds) -> Stays:
    """The window's stays of known outcome, from its scores (oldest first)."""
    first: dict[tuple[str, str | None], LabelledScore] = {}
    top: dict[tuple[str, str | None], float] = {}
    lead: dict[tuple[str, str | None], float] = {}
    for score in scores:
        key = _stay_key(score)
        first.setdefault(key, score)
        top[key] = max(top.get(key, 0.0), score.probability)
        hours = score.outcome.lead_time_h if score.outcome is not None else None
        if score.probability >= thresholds.high_at and hours is not None:
            lead[key] = max(lead.get(key, -math.inf), hours)
    known = [k for k, s in first.items() if s.outcome is not None and s.outcome.status == "known"]
    chosen = [first[k] for k in known]
    outcome_of = [s.outcome for s in chosen]
    groups: dict[str, list[str]] = {a: [] for a in ATTRIBUTES}
    for score, outcome in zip(chosen, outcome_of, strict=True):
        assert outcome is not None
        groups["sex"].append(outcome.sex)
        groups["age_band"].append(outcome.age_band)
        groups["race_ethnicity"].append(outcome.race_ethnicity)
        groups["unit"].append(outcome.unit)
        groups["path"].append("cxr_pairs" if score.path == "pairs" else "ehr_only")
    peaks = np.asarray([top[k] for k in known], dtype=np.float64)
    return Stays(
        probability=np.asarray([s.probability for s in chosen], dtype=np.float64),
        died=np.asarray([bool(o and o.died) for o in outcome_of], dtype=np.float64),
        alerted={
            "moderate": peaks >= thresholds.moderate_at,
            "high": peaks >= thresholds.high_at,
        },
        lead_time_h=np.asarray([lead.get(k, math.nan) for k in known], dtype=np.float64),
        groups=groups,
    )


def count_figures(
    scores: Sequence[LabelledScore], window: int, pending_horizon_days: float | None = None
) -> list[Figure]:
    """Scores, stays and stays by the status of their outcome; the pending ones open longer
    than ``pending_horizon_days`` also apart."""
    rank = {"known": 3, "missing": 2, "pending": 1, "new": 0}
    status: dict[tuple[str, str | None], str] = {}
    open_days: dict[tuple[str, str | None], float] = {}
    for score in scores:
        found = "new" if score.outcome is None else score.outcome.status
        key = _stay_key(score)
        status[key] = max(status.get(key, "new"), found, key=rank.__getitem__)
        if score.outcome is not None and score.outcome.open_days is not None:
            open_days[key] = max(open_days.get(key, 0.0), score.outcome.open_days)
    values = list(status.values())
    beyond = (
        None
        if pending_horizon_days is None
        else sum(
            1
            for key, found in status.items()
            if found == "pending" and open_days.get(key, 0.0) > pending_horizon_days
        )
    )
    counts = {
        "scores": len(scores),
        "stays": len(values),
        "stays_known": values.count("known"),
        # A score not looked at yet is a stay whose outcome is not known: pending.
        "stays_pending": values.count("pending") + values.count("new"),
        "stays_missing": values.count("missing"),
    }
    if beyond is not None:
        counts["stays_pending_beyond_horizon"] = beyond
    return [Figure(window, "", "", name, float(v), n=v) for name, v in counts.items()]


def wilson(successes: int, n: int) -> tuple[float | None, float | None, float | None]:
    """A share with its Wilson 95 % interval (all ``None`` for ``n == 0``)."""
    if n == 0:
        return None, None, None
    p = successes / n
    centre = (p + _Z95**2 / (2 * n)) / (1 + _Z95**2 / n)
    half = _Z95 * math.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / (1 + _Z95**2 / n)
    return p, max(0.0, centre - half), min(1.0, centre + half)


def threshold_figures(
    scores: Sequence[LabelledScore], stays: Stays, thresholds: RiskThresholds, window: int
) -> list[Figure]:
    """Alert rates over scores; PPV and sensitivity over stays, at each risk level."""
    out = []
    probabilities = np.asarray([s.probability for s in scores], dtype=np.float64)
    died = stays.died.astype(bool)
    for level, at in (("moderate", thresholds.moderate_at), ("high", thresholds.high_at)):
        rate = wilson(int((probabilities >= at).sum()), probabilities.size)
        out.append(Figure(window, "", "", f"alert_rate:{level}", *rate, n=probabilities.size))
        alerted = stays.alerted[level]
        ppv = wilson(int((alerted & died).sum()), int(alerted.sum()))
        out.append(Figure(window, "", "", f"ppv:{level}", *ppv, n=int(alerted.sum())))
        sens = wilson(int((alerted & died).sum()), int(died.sum()))
        out.append(Figure(window, "", "", f"sensitivity:{level}", *sens, n=int(died.sum())))
    leads = stays.lead_time_h[np.isfinite(stays.lead_time_h) & died]
    if leads.size:
        q1, median, q3 = (float(v) for v in np.percentile(leads, [25, 50, 75]))
        out.append(Figure(window, "", "", "lead_time_h", median, q1, q3, n=int(leads.size)))
    return out


def decile_figures(stays: Stays, window: int) -> list[Figure]:
    """Mean predicted risk and observed death rate per decile of predicted risk."""
    if stays.size < DECILES:
        return []
    order = np.argsort(stays.probability, kind="mergesort")
    out = []
    for k, rows in enumerate(np.array_split(order, DECILES), start=1):
        n = int(rows.size)
        out.append(Figure(window, "", "", f"decile{k}:predicted",
                          float(stays.probability[rows].mean()), n=n))  # fmt: skip
        out.append(Figure(window, "", "", f"decile{k}:observed",
                          float(stays.died[rows].mean()), n=n))  # fmt: skip
    return out


def mortality_window(stays: Stays, window: int, resamples: int, seed: int) -> list[Figure]:
    """AUROC, AUPRC, Brier and ECE with intervals, deaths and the rates in the large."""
    out = [Figure(window, "", "", "deaths", float(stays.died.sum()), n=stays.size)]
    if stays.size == 0:
        return out
    out.append(Figure(window, "", "", "observed_rate", float(stays.died.mean()), n=stays.size))
    out.append(
        Figure(window, "", "", "mean_predicted", float(stays.probability.mean()), n=stays.size)
    )
    figures = mortality_figures(stays.predictions(), resamples, seed)
    for name in ("auroc", "auprc", "brier", "ece") if figures else ():
        f = figures[name]  # type: ignore[index]
        out.append(Figure(window, "", "", name, f["value"], f["low"], f["high"], stays.size))
    if figures:
        null = ece_if_calibrated(stays.probability, resamples, seed)
        out.append(Figure(window, "", "", "ece_if_calibrated", null, n=stays.size))
    return out


def ece_if_calibrated(probability: FloatArray, resamples: int, seed: int) -> float:
    """The 95th percentile of the ECE of these risks when outcomes are drawn from them."""
    rng = np.random.default_rng(seed)
    p = np.asarray(probability, dtype=np.float64)
    draws = [
        expected_calibration_error((rng.random(p.size) < p).astype(np.float64), p)
        for _ in range(max(resamples, 20))
    ]
    return float(np.quantile(draws, 0.95))


def subgroup_window(stays: Stays, window: int, resamples: int, seed: int) -> list[Figure]:
    """Each group's counts and figures (the evaluation's subgroup figures), and everyone
    else's AUROC beside it."""
    if stays.size == 0:
        return []
    groups = {
        attribute: {
            group: np.flatnonzero(np.asarray(names) == group).astype(np.int64)
            for group in sorted(set(names))
        }
        for attribute, names in stays.groups.items()
    }
    out = []
    # Every group's figures, by the evaluation's subgroup code; a group of one stay has none.
    groups = {a: {g: rows for g, rows in gs.items() if rows.size >= 2} for a, gs in groups.items()}
    for entry in subgroup_figures({"dipro": stays.predictions()}, groups, resamples, seed):
        attribute, group = entry["attribute"], entry["group"]
        rows = groups[attribute][group]
        rest = np.setdiff1d(np.arange(stays.size), rows)
        figures: dict[str, Any] = entry["dipro"]
        low, high = figures.get("mortality_auroc_interval") or (None, None)
        rest_auroc = (
            roc_auc(stays.died[rest].astype(np.int64), stays.probability[rest])
            if rest.size
            else math.nan
        )
        for metric, value, lo, hi in (
            ("stays", float(rows.size), None, None),
            ("deaths", float(entry["deaths"]), None, None),
            ("auroc", figures.get("mortality_auroc"), low, high),
            ("brier", figures.get("mortality_brier"), None, None),
            ("ece", figures.get("mortality_ece"), None, None),
            ("auroc_rest", rest_auroc, None, None),
        ):
            out.append(Figure(window, attribute, group, metric, _number(value), _number(lo),
                              _number(hi), int(rows.size)))  # fmt: skip
    return out


def window_figures(
    scores: Sequence[LabelledScore],
    window: int,
    thresholds: RiskThresholds,
    *,
    resamples: int,
    seed: int = 0,
    min_group_stays: int = 2,
    pending_horizon_days: float | None = None,
) -> list[Figure]:
    """Every figure of one window's scores (module docstring); subgroups only in a window
    with at least ``min_group_stays`` stays of known outcome (a quarter of the resamples);
    pending stays beyond ``pending_horizon_days`` counted apart when it is given."""
    stays = gather_stays(scores, thresholds)
    return [
        *count_figures(scores, window, pending_horizon_days),
        *mortality_window(stays, window, resamples, seed),
        *decile_figures(stays, window),
        *threshold_figures(scores, stays, thresholds, window),
        *(
            subgroup_window(stays, window, max(resamples // 4, 10), seed)
            if stays.size >= min_group_stays
            else []
        ),
    ]
