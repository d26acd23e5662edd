"""Length-of-stay and progression performance over the monitor's windows: the scores written
beside each mortality score, judged against the outcomes gathered with it (each stay once, by
its first score in the window), with intervals and the site's minimums; shown in the summary,
the HTML report, the page and the OpenMetrics text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_CLASSES, PROGRESSION_IGNORE
from dipro_fhir.core.scores import Score
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import EncounterId, PatientId, RunId
from dipro_fhir.monitoring.metrics import openmetrics_text
from dipro_fhir.monitoring.night import compute_night
from dipro_fhir.monitoring.performance import Figure
from dipro_fhir.monitoring.report import render_report, summary_text
from dipro_fhir.monitoring.view import load_view
from dipro_fhir.store.outcomes import Outcome, record_outcomes, scores_to_follow
from dipro_fhir.store.results import ResultStore
from tests.unit.monitoring.openmetrics import parse
from tests.unit.monitoring.worlds import sqlite_store

NIGHT = datetime(2026, 5, 1, 2, tzinfo=UTC)
STAYS = 8
#: Stays whose most likely LoS bin is the true one (the rest are put in the wrong bin).
RIGHT_LOS = 2


def _true_bin(stay: int) -> int:
    return stay % len(LOS_BINS)


def _change(stay: int) -> int:
    """The coded change of atelectasis in the stay's last pair (0 worsened .. 2 no change)."""
    return stay % len(PROGRESSION_CLASSES)


def _scores(store: ResultStore, night: int, run: str) -> None:
    as_of = NIGHT + timedelta(days=night)
    store.start_run(RunId(run), as_of=as_of, model_name="m", model_version="1", kind="nightly")
    scores = []
    for stay in range(STAYS):
        patient, encounter = PatientId(f"pat-{stay}"), EncounterId(f"enc-{stay}")

        def score(task: str, outcome: str, p: float, pp: PatientId = patient,
                  ee: EncounterId = encounter) -> Score:  # fmt: skip
            return Score(pp, ee, task, outcome, p, "m", "1", as_of, RunId(run))

        scores.append(score("mortality", "death", 0.1 + 0.05 * stay))
        # The first night puts RIGHT_LOS stays in their bin; a later night's scores (of the
        # same stays) are all right, and must not count: a stay is judged by its first score.
        likely = _true_bin(stay) if stay < RIGHT_LOS or night > 0 else _true_bin(stay + 1)
        scores += [score("los", b, 0.7 if k == likely else 0.1) for k, b in enumerate(LOS_BINS)]
        for f, finding in enumerate(FINDINGS):
            for c, change in enumerate(PROGRESSION_CLASSES):
                right = f == 0 and c == _change(stay)
                scores.append(score("progression", f"{finding}:{change}", 0.8 if right else 0.1))
    store.record_chunk(RunId(run), scores)
    store.finish_run(RunId(run), status="success", counts={}, timings_s={})


def _outcomes(store: ResultStore) -> None:
    """Every stay ended on night 3: its LoS bin, and atelectasis coded in its last pair."""
    out = []
    for s in scores_to_follow(store.engine, NIGHT + timedelta(days=3)):
        stay = int(s.patient_id.split("-")[1])
        coded = (_change(stay), *[PROGRESSION_IGNORE] * (len(FINDINGS) - 1))
        ended = NIGHT + timedelta(days=3)
        out.append(Outcome(s.score_id, "known", stay % 3 == 0, 4.0, _true_bin(stay), coded,
                           None, "female", "45-64", "white", "ICU", ended))  # fmt: skip
    record_outcomes(store.engine, out, known_at=NIGHT + timedelta(days=3))


def _get(figures: tuple[Figure, ...], window: int, metric: str) -> Figure:
    return next(
        f for f in figures if (f.window_days, f.attribute, f.metric) == (window, "", metric)
    )


def test_length_of_stay_and_progression_are_measured_per_window_and_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_store(tmp_path)
    _scores(store, 0, "run-0")
    _scores(store, 1, "run-1")
    _outcomes(store)
    for name, value in {
        "DIPRO_STORE__URL": store.engine.url.render_as_string(hide_password=False),
        "DIPRO_MODEL__CHECKPOINT": str(tmp_path / "no-checkpoint"),
        "DIPRO_MONITOR__MIN_OUTCOMES": "5",
        "DIPRO_MONITOR__MIN_LOS_MACRO_F1": "0.9",
        "DIPRO_MONITOR__MIN_PROGRESSION_AUROC": "0.5",
        "DIPRO_MONITOR__RESAMPLES": "50",
    }.items():
        monkeypatch.setenv(name, value)

    (result,) = compute_night(Settings(), NIGHT + timedelta(days=1, hours=4))

    figures = result.figures
    for window in (1, 7, 30):
        if window == 1:  # only the second night's scores: all right
            assert _get(figures, 1, "los:accuracy").value == 1.0
            continue
        assert _get(figures, window, "los:stays").value == STAYS
        assert _get(figures, window, "los:accuracy").value == pytest.approx(RIGHT_LOS / STAYS)
        interval = _get(figures, window, "los:macro_f1")
        assert interval.low is not None
        assert interval.high is not None
        assert interval.low <= (interval.value or 0) <= interval.high < 0.9
        assert _get(figures, window, "progression:stays").value == STAYS
        assert _get(figures, window, "progression:labelled").value == STAYS  # one finding each
        assert _get(figures, window, "progression:auroc:atelectasis").value == 1.0
        assert _get(figures, window, "progression:auroc:pneumonia").value is None  # none coded
    kinds = {(a.kind, a.window) for a in result.alerts}
    assert ("length-of-stay", "30d") in kinds
    assert not any(a.kind == "progression" for a in result.alerts)  # AUROC 1.0

    view = load_view(store.engine)
    summary = summary_text(view)
    assert f"length of stay ({STAYS} stays): accuracy {RIGHT_LOS / STAYS:.3f}" in summary
    assert "ALERT length-of-stay: length-of-stay macro-F1" in summary
    assert f"progression ({STAYS} stays): AUROC 1.000" in summary
    page = render_report(view)
    assert "Length of stay and progression" in page
    assert "<th>AUROC atelectasis</th>" in page
    samples = parse(openmetrics_text(view))
    wanted = ("dipro_monitor_figure", "los:accuracy", "30")
    accuracy = [v for n, labels, v in samples
                if (n, labels.get("metric"), labels.get("window_days")) == wanted]  # fmt: skip
    assert accuracy == [pytest.approx(RIGHT_LOS / STAYS)]
    alerts = {labels["kind"]: v for n, labels, v in samples if n == "dipro_monitor_alerts"}
    assert alerts["length-of-stay"] >= 1.0
    assert alerts["progression"] == 0.0
