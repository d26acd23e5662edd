"""Performance over a window: each stay judged once by its first score, pending stays counted
and left out, the evaluation room's figures with intervals, thresholds, lead time, groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from dipro.metrics import brier_score, roc_auc
from dipro_fhir.core.risk import RiskThresholds
from dipro_fhir.monitoring.performance import Figure, gather_stays, window_figures
from dipro_fhir.store.outcomes import LabelledScore, Outcome

NIGHT = datetime(2026, 4, 1, 2, tzinfo=UTC)
THRESHOLDS = RiskThresholds(moderate_at=0.2, high_at=0.5)


def _score(
    stay: int,
    p: float,
    night: int = 0,
    *,
    status: str = "known",
    died: bool = False,
    lead: float | None = None,
    sex: str = "female",
    path: str = "pairs",
) -> LabelledScore:
    outcome = Outcome(stay * 10 + night, status, died if status == "known" else None, 3.0, 1,
                      None, lead, sex, "45-64", "white", "ICU", NIGHT)  # fmt: skip
    return LabelledScore(stay * 10 + night, f"p{stay}", f"e{stay}", NIGHT + timedelta(night),
                         "m", "1", p, None, path, outcome)  # fmt: skip


def _get(figures: list[Figure], metric: str, attribute: str = "", group: str = "") -> Figure:
    return next(
        f for f in figures if (f.metric, f.attribute, f.group) == (metric, attribute, group)
    )


def test_each_stay_counts_once_by_its_first_score_and_pending_stays_are_left_out() -> None:
    rng = np.random.default_rng(0)
    died = rng.random(60) < 0.3
    risk = np.clip(0.3 * died + rng.random(60) * 0.6, 0.01, 0.99)
    scores = [_score(i, float(risk[i]), 0, died=bool(died[i])) for i in range(60)]
    # Later scores of the same stays (ignored) and three stays still open (pending).
    scores += [_score(i, 0.99 - float(risk[i]), 1, died=bool(died[i])) for i in range(60)]
    scores += [_score(100 + i, 0.9, 0, status="pending") for i in range(3)]
    figures = window_figures(scores, 7, THRESHOLDS, resamples=50)
    assert _get(figures, "stays").value == 63
    assert _get(figures, "stays_known").value == 60
    assert _get(figures, "stays_pending").value == 3
    assert _get(figures, "scores").value == 123
    auroc = _get(figures, "auroc")
    assert auroc.value == pytest.approx(roc_auc(died.astype(np.int64), risk))
    assert auroc.low is not None
    assert auroc.high is not None
    assert auroc.low <= auroc.value <= auroc.high
    assert _get(figures, "brier").value == pytest.approx(brier_score(died.astype(float), risk))
    assert _get(figures, "decile10:predicted").value == pytest.approx(np.sort(risk)[-6:].mean())


def test_ppv_sensitivity_alert_rate_and_lead_time_at_the_site_thresholds() -> None:
    scores = [
        _score(1, 0.1, 0, died=True, lead=60.0),
        _score(1, 0.6, 1, died=True, lead=36.0),  # first high score 36 h before death
        _score(1, 0.7, 2, died=True, lead=12.0),
        _score(2, 0.55, 0, died=False),  # a false alarm
        _score(3, 0.1, 0, died=True, lead=20.0),  # a missed death
        _score(4, 0.05, 0, died=False),
    ]
    figures = window_figures(scores, 30, THRESHOLDS, resamples=20)
    assert _get(figures, "ppv:high").value == pytest.approx(0.5)
    assert _get(figures, "sensitivity:high").value == pytest.approx(0.5)
    assert _get(figures, "alert_rate:high").value == pytest.approx(3 / 6)
    lead = _get(figures, "lead_time_h")
    assert (lead.value, lead.n) == (36.0, 1)


def test_groups_carry_their_auroc_and_everyone_elses() -> None:
    rng = np.random.default_rng(1)
    scores = []
    for i in range(120):
        female = i % 2 == 0
        died = bool(rng.random() < 0.3)
        signal = 0.35 * died if not female else 0.35 * (not died)  # wrong for women
        scores.append(_score(i, float(np.clip(0.2 + signal + 0.3 * rng.random(), 0, 1)), 0,
                             died=died, sex="female" if female else "male",
                             path="pairs" if i % 3 else "ehr_only"))  # fmt: skip
    figures = window_figures(scores, 30, THRESHOLDS, resamples=50)
    women, men = _get(figures, "auroc", "sex", "female"), _get(figures, "auroc", "sex", "male")
    assert women.value is not None
    assert women.value < 0.3
    assert men.value is not None
    assert men.value > 0.7
    assert _get(figures, "auroc_rest", "sex", "female").value == pytest.approx(men.value)
    assert _get(figures, "stays", "path", "ehr_only").value == 40
    stays = gather_stays(scores, THRESHOLDS)
    assert stays.groups["path"].count("cxr_pairs") == 80


def _pending(stay: int, night: int, open_days: float | None) -> LabelledScore:
    outcome = Outcome(stay * 10 + night, "pending", None, None, None, None, None, "female",
                      "45-64", "white", "ICU", NIGHT, open_days=open_days)  # fmt: skip
    return LabelledScore(stay * 10 + night, f"p{stay}", f"e{stay}", NIGHT + timedelta(night),
                         "m", "1", 0.3, None, "pairs", outcome)  # fmt: skip


def test_stays_open_beyond_the_horizon_are_counted_apart_and_still_pending() -> None:
    scores = [
        _pending(1, 0, 3.0),
        _pending(1, 1, 31.5),  # the same stay, looked at again later: 31.5 days open by then
        _pending(2, 0, 45.0),
        _pending(3, 0, 29.0),
        _pending(4, 0, None),  # start unknown: not judged beyond the horizon
        _score(5, 0.4, died=True),
    ]
    figures = window_figures(scores, 30, THRESHOLDS, resamples=10, pending_horizon_days=30)
    assert _get(figures, "stays_pending").value == 4
    assert _get(figures, "stays_pending_beyond_horizon").value == 2
    assert _get(figures, "stays_known").value == 1
    # The known stay alone is measured: nothing pending is guessed.
    assert _get(figures, "deaths").value == 1
    without = window_figures(scores, 30, THRESHOLDS, resamples=10)
    assert not [f for f in without if f.metric == "stays_pending_beyond_horizon"]
