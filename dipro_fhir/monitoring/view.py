"""What the monitor's surfaces show, read back from the results database.

:func:`load_view` gathers, per model version, its monitored nights up to a time, the latest
night's figures, drift items and alerts, and the history of the headline figures over the
nights: everything the HTML report (:mod:`dipro_fhir.monitoring.report`), the terminal
summary, the OpenMetrics text (:mod:`dipro_fhir.monitoring.metrics`) and the Airflow UI page
need, and nothing of a patient (the tables hold none).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine

from dipro_fhir.store.monitoring import (
    NightRecord,
    read_alerts,
    read_drift,
    read_figures,
    read_nights,
)

#: Nights of history shown (the over-time plots).
HISTORY_NIGHTS: Final[int] = 90
#: Figures kept for every night of the history.
HISTORY_METRICS: Final[frozenset[str]] = frozenset(
    {"auroc", "ece", "brier", "stays_known", "stays_pending", "alert_rate:high"}
)


@dataclass(frozen=True, slots=True)
class VersionView:
    """One model version's nights, and its latest night in full."""

    model_name: str
    model_version: str
    nights: tuple[NightRecord, ...]
    figures: tuple[dict[str, Any], ...]
    drift: tuple[dict[str, Any], ...]
    alerts: tuple[dict[str, Any], ...]
    history: tuple[dict[str, Any], ...]

    @property
    def latest(self) -> NightRecord:
        """The latest monitored night."""
        return self.nights[-1]

    def figure(
        self, window: int, metric: str, attribute: str = "", group: str = ""
    ) -> dict[str, Any] | None:
        """One figure of the latest night, if it was computed."""
        for row in self.figures:
            key = (row["window_days"], row["attribute"], row["group_name"], row["metric"])
            if key == (window, attribute, group, metric):
                return row
        return None

    def over_time(
        self, window: int, metric: str
    ) -> list[tuple[NightRecord, dict[str, Any] | None]]:
        """Each night with its overall figure of ``metric`` over ``window`` days."""
        by_night = {
            row["night_id"]: row
            for row in self.history
            if (row["window_days"], row["attribute"], row["metric"]) == (window, "", metric)
        }
        return [(night, by_night.get(night.id)) for night in self.nights]


@dataclass(frozen=True, slots=True)
class MonitorView:
    """Every monitored model version, up to a time."""

    versions: tuple[VersionView, ...]


def _version(engine: Engine, nights: Sequence[NightRecord]) -> VersionView:
    latest = nights[-1]
    history = [
        row
        for row in read_figures(engine, [n.id for n in nights])
        if row["attribute"] == "" and row["metric"] in HISTORY_METRICS
    ]
    return VersionView(
        model_name=latest.model_name,
        model_version=latest.model_version,
        nights=tuple(nights),
        figures=tuple(read_figures(engine, [latest.id])),
        drift=tuple(read_drift(engine, [latest.id])),
        alerts=tuple(read_alerts(engine, [latest.id])),
        history=tuple(history),
    )


def load_view(
    engine: Engine, *, until: datetime | None = None, model_version: str | None = None
) -> MonitorView:
    """The monitored versions with nights up to ``until`` (default: all), latest first by
    their last night."""
    nights = read_nights(engine, model_version=model_version, until=until)
    versions: dict[str, list[NightRecord]] = {}
    for night in nights:
        versions.setdefault(night.model_version, []).append(night)
    views = [_version(engine, found[-HISTORY_NIGHTS:]) for found in versions.values()]
    return MonitorView(tuple(sorted(views, key=lambda v: v.latest.as_of, reverse=True)))
