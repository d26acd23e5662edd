"""One monitored night: for every model version scored in the last window, its figures over
each window, its drift against the reference and the alerts they raise, recorded together.

The ``dipro_monitor`` DAG runs :func:`~dipro_fhir.monitoring.outcomes.gather_outcomes`, then
:func:`compute_night`, then :func:`~dipro_fhir.monitoring.alerts.check_night`; the CLI's
``dipro-fhir monitor`` all three. Computing a night again replaces its rows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dipro_fhir.core.risk import RiskThresholds
from dipro_fhir.core.settings import Settings
from dipro_fhir.monitoring.performance import Figure, window_figures
from dipro_fhir.run import connections
from dipro_fhir.store.monitoring import (
    NightlyRun,
    NightRecord,
    night_id,
    nightly_runs,
    record_night,
)
from dipro_fhir.store.outcomes import labelled_scores

logger = logging.getLogger(__name__)

#: Figures the night's row counts (of the longest window, and of tonight).
COUNTS = ("scores", "stays", "stays_known", "stays_pending", "stays_missing", "deaths")


@dataclass(frozen=True, slots=True)
class NightResult:
    """What a night found for one model version."""

    night: NightRecord
    figures: tuple[Figure, ...]
    drift: tuple[Any, ...] = ()
    alerts: tuple[Any, ...] = field(default_factory=tuple)


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
    figures: list[Figure] = []
    for days in settings.monitor.windows_days:
        scores = labelled_scores(
            engine, model_version=model_version, since=as_of - timedelta(days=days), until=as_of
        )
        figures += window_figures(
            scores, days, thresholds_of(settings), resamples=settings.monitor.resamples
        )
    return figures


def _counts(figures: Sequence[Figure], longest: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in figures:
        if f.attribute == "" and f.metric in COUNTS and f.window_days in (1, longest):
            out[f"{f.metric}_{f.window_days}d"] = int(f.value or 0)
    return out


def compute_night(settings: Settings, as_of: datetime) -> list[NightResult]:
    """Compute and record the night of every version scored in the longest window."""
    engine = connections.engine(settings)
    longest = max(settings.monitor.windows_days)
    runs = nightly_runs(engine, until=as_of)
    results = []
    for version, version_runs in versions_to_monitor(runs, as_of, longest).items():
        run = tonight(version_runs, as_of)
        figures = performance_figures(settings, version, as_of)
        night = NightRecord(
            id=night_id(as_of, version),
            as_of=as_of,
            model_name=version_runs[-1].model_name,
            model_version=version,
            run_id=None if run is None else run.run_id,
            status="ok",
            counts=_counts(figures, longest),
            reference={},
        )
        record_night(engine, night, [_row(f) for f in figures], [], [])
        results.append(NightResult(night, tuple(figures)))
        logger.info("monitor: version %s, %d figures", version, len(figures))
    return results


def _row(figure: Figure) -> dict[str, Any]:
    row = asdict(figure)
    row["group_name"] = row.pop("group")
    return row
