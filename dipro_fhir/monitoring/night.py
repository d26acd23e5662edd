"""One monitored night: for every model version scored in the last window, its figures over
each window, its drift against the reference and the alerts they raise, recorded together.

The ``dipro_monitor`` DAG runs :func:`~dipro_fhir.monitoring.outcomes.gather_outcomes`, then
:func:`compute_night`, then :func:`~dipro_fhir.monitoring.alerts.check_night`; the CLI's
``dipro-fhir monitor`` all three. Computing a night again replaces its rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.core.risk import RiskThresholds
from dipro_fhir.core.settings import Settings
from dipro_fhir.monitoring.alerts import Alert, drift_alerts, performance_alerts
from dipro_fhir.monitoring.drift import DriftItem, compare_inputs
from dipro_fhir.monitoring.performance import Figure, window_figures
from dipro_fhir.monitoring.reference import choose_reference, run_inputs
from dipro_fhir.monitoring.task_performance import los_window, progression_window
from dipro_fhir.run import connections
from dipro_fhir.store.monitoring import (
    NightlyRun,
    NightRecord,
    night_id,
    nightly_runs,
    record_night,
)
from dipro_fhir.store.outcomes import labelled_scores, task_probabilities

logger = logging.getLogger(__name__)

#: Figures the night's row counts (of the longest window, and of tonight).
COUNTS = (
    "scores",
    "stays",
    "stays_known",
    "stays_pending",
    "stays_pending_beyond_horizon",
    "stays_missing",
    "deaths",
)


@dataclass(frozen=True, slots=True)
class NightResult:
    """What a night found for one model version."""

    night: NightRecord
    figures: tuple[Figure, ...]
    drift: tuple[DriftItem, ...] = ()
    alerts: tuple[Alert, ...] = ()


def thresholds_of(settings: Settings) -> RiskThresholds:
    """The site's risk thresholds (the write-back's)."""
    return RiskThresholds(settings.writeback.moderate_risk_at, settings.writeback.high_risk_at)


def versions_to_monitor(
    runs: Sequence[NightlyRun], as_of: datetime, days: int
) -> dict[str, list[NightlyRun]]:
    """Model version -> its nightly runs up to ``as_of``, for versions with a run in the last
    ``days`` days."""
    recent = {r.model_version for r in runs if as_of - timedelta(days=days) < r.as_of <= as_of}
    return {v: [r for r in runs if r.model_version == v] for v in sorted(recent)}


def tonight(runs: Sequence[NightlyRun], as_of: datetime) -> NightlyRun | None:
    """The version's nightly run of the day before ``as_of`` (the latest one in it)."""
    found = [r for r in runs if as_of - timedelta(days=1) < r.as_of <= as_of]
    return found[-1] if found else None


def performance_figures(settings: Settings, model_version: str, as_of: datetime) -> list[Figure]:
    """Every window's figures of one version as of ``as_of``."""
    engine = connections.engine(settings)
    limits = settings.monitor
    figures: list[Figure] = []
    for days in limits.windows_days:
        since = as_of - timedelta(days=days)
        scores = labelled_scores(engine, model_version=model_version, since=since, until=as_of)
        figures += window_figures(
            scores,
            days,
            thresholds_of(settings),
            resamples=limits.resamples,
            min_group_stays=limits.min_group_outcomes,
            pending_horizon_days=limits.pending_horizon_days,
        )
        for task, measure in (("los", los_window), ("progression", progression_window)):
            predicted = task_probabilities(
                engine, task=task, model_version=model_version, since=since, until=as_of
            )
            figures += measure(scores, predicted, days, limits.resamples, 0)
    return figures


def _counts(figures: Sequence[Figure], longest: int, horizon_days: float) -> dict[str, Any]:
    out: dict[str, Any] = {"pending_horizon_days": horizon_days}
    for f in figures:
        if f.attribute == "" and f.metric in COUNTS and f.window_days in (1, longest):
            out[f"{f.metric}_{f.window_days}d"] = int(f.value or 0)
    return out


def card_validation(settings: Settings, model_version: str) -> dict[str, Any] | None:
    """The configured checkpoint's validation record, when it is of ``model_version``."""
    from dipro_fhir.scoring.card import read_model_card

    try:
        card = read_model_card(settings.model.checkpoint)
    except DiproFhirError:
        return None
    return dict(card.validation) if card.version == model_version else None


def night_drift(
    settings: Settings, runs: Sequence[NightlyRun], run: NightlyRun | None
) -> tuple[list[DriftItem], dict[str, Any]]:
    """Tonight's drift items and what they were compared with."""
    if run is None:
        return [], {"source": None, "detail": "no nightly run of this version tonight"}
    engine = connections.engine(settings)
    version = run.model_version
    reference = choose_reference(settings, engine, runs, run, card_validation(settings, version))
    if isinstance(reference, str):
        return [], {"source": None, "detail": reference}
    items = compare_inputs(run_inputs(engine, run), reference.inputs, settings.monitor)
    return items, reference.describe()


def compute_night(settings: Settings, as_of: datetime) -> list[NightResult]:
    """Compute and record the night of every version scored in the longest window."""
    engine = connections.engine(settings)
    limits = settings.monitor
    longest = max(limits.windows_days)
    results = []
    for version, runs in versions_to_monitor(
        nightly_runs(engine, until=as_of), as_of, longest
    ).items():
        run = tonight(runs, as_of)
        figures = performance_figures(settings, version, as_of)
        drift, reference = night_drift(settings, runs, run)
        alerts = performance_alerts(figures, limits) + drift_alerts(drift, limits)
        night = NightRecord(
            id=night_id(as_of, version),
            as_of=as_of,
            model_name=runs[-1].model_name,
            model_version=version,
            run_id=None if run is None else run.run_id,
            status="breach" if alerts else "ok",
            counts=_counts(figures, longest, limits.pending_horizon_days),
            reference=reference,
        )
        record_night(
            engine,
            night,
            [_row(f) for f in figures],
            [asdict(d) for d in drift],
            [asdict(a) for a in alerts],
        )
        results.append(NightResult(night, tuple(figures), tuple(drift), tuple(alerts)))
        logger.info(
            "monitor: version %s, %d figures, %d drift items (%d flagged), %d alerts",
            version,
            len(figures),
            len(drift),
            sum(d.flagged for d in drift),
            len(alerts),
        )
    return results


def _row(figure: Figure) -> dict[str, Any]:
    row = asdict(figure)
    row["group_name"] = row.pop("group")
    return row
