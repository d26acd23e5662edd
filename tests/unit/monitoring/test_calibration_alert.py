"""A calibration alert needs the ECE above what a calibrated model shows on as many stays:
ECE is biased upwards on few stays (night 7 of the thirty-night world, 7-day window: ECE 0.181
(0.112-0.300) from a calibrated model raised the alert)."""

from __future__ import annotations

import numpy as np

from dipro.metrics import expected_calibration_error
from dipro_fhir.core.settings import MonitorSettings
from dipro_fhir.monitoring.alerts import performance_alerts
from dipro_fhir.monitoring.performance import Figure, ece_if_calibrated


def _calibration(ece: float, low: float, if_calibrated: float | None) -> list[str]:
    figures = [
        Figure(7, "", "", "stays_known", 35),
        Figure(7, "", "", "deaths", 8),
        Figure(7, "", "", "ece", ece, low, 0.3),
    ]
    if if_calibrated is not None:
        figures.append(Figure(7, "", "", "ece_if_calibrated", if_calibrated))
    return [
        a.message for a in performance_alerts(figures, MonitorSettings()) if a.kind == "calibration"
    ]


def test_an_ece_a_calibrated_model_could_show_raises_no_alert() -> None:
    assert _calibration(0.181, 0.112, if_calibrated=0.2) == []
    assert len(_calibration(0.181, 0.112, if_calibrated=0.15)) == 1
    assert len(_calibration(0.181, 0.112, if_calibrated=None)) == 1  # figures stored before it
    assert _calibration(0.181, 0.09, if_calibrated=0.15) == []  # the interval still rules


def test_the_calibrated_ece_shrinks_with_the_stays_and_bounds_a_calibrated_sample() -> None:
    rng = np.random.default_rng(3)
    risks = {n: rng.beta(1.0, 5.0, n) for n in (35, 300)}
    bound = {n: ece_if_calibrated(p, 400, seed=1) for n, p in risks.items()}
    assert bound[35] > 0.12 > bound[300] > 0.0
    p = risks[35]
    above = sum(
        expected_calibration_error((rng.random(p.size) < p).astype(np.float64), p) > bound[35]
        for _ in range(400)
    )
    assert above < 400 * 0.1  # about 5 % of calibrated samples exceed the 95th percentile
    shifted = np.clip(p + 0.25, 0.0, 1.0)  # risks far above the rate outcomes are drawn at
    miscalibrated = expected_calibration_error((rng.random(p.size) < p).astype(np.float64), shifted)
    assert miscalibrated > ece_if_calibrated(shifted, 400, seed=1)
