"""A deliberately miscalibrated checkpoint (the demo's, with its mortality risks pushed up)
raises the calibration alert once enough outcomes are known; its ranking, and so its AUROC,
is the demo's, so discrimination raises nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dipro_fhir.monitoring.night import NightResult
from dipro_fhir.monitoring.performance import Figure
from dipro_fhir.synth.stream import nightly_world
from tests.checkpoints import write_miscalibrated_checkpoint
from tests.unit.monitoring.nights import run_nights, world_settings

pytestmark = pytest.mark.slow

FIRST = datetime(2026, 6, 1, 2, tzinfo=UTC)
NIGHTS = 12


def _figure(result: NightResult, metric: str) -> Figure:
    return next(
        f for f in result.figures if (f.window_days, f.attribute, f.metric) == (30, "", metric)
    )


def test_a_miscalibrated_checkpoint_raises_the_calibration_alert(tmp_path: Path) -> None:
    world = nightly_world(nights=NIGHTS, first_night=FIRST, admissions_per_day=5, seed=12)
    settings = world_settings(world, tmp_path, write_miscalibrated_checkpoint)
    nights = {k: r[0] for k, r in run_nights(world, settings, range(NIGHTS), tmp_path).items()}
    last = nights[NIGHTS - 1]
    calibration = [a for a in last.alerts if a.kind == "calibration"]
    assert calibration, [a.message for a in last.alerts]
    assert {a.window for a in calibration} >= {"30d"}
    ece = _figure(last, "ece")
    assert ece.low is not None
    assert ece.low > settings.monitor.max_ece
    observed, predicted = _figure(last, "observed_rate"), _figure(last, "mean_predicted")
    assert predicted.value is not None
    assert observed.value is not None
    assert predicted.value > observed.value + 0.2
    assert not any(a.kind == "discrimination" for a in last.alerts)
    assert last.night.model_version == "9-miscalibrated"
