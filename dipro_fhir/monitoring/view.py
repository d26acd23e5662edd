"""What the monitor's surfaces show, read back from the results database.

:func:`load_view` gathers, per model version, its monitored nights up to a time, the latest
night's figures, drift items and alerts, and the history of the headline figures over the
nights: everything the HTML report (:mod:`dipro_fhir.monitoring.report`), the terminal
summary, the OpenMetrics text (:mod:`dipro_fhir.monitoring.metrics`) and the Airflow UI page
need, and nothing of a patient (the tables hold none). :func:`night_of_run` finds the
monitored night of one scoring run (the night page), :func:`run_summaries` a few figures of
the monitored nights of many runs (the night list).
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


@dataclass(frozen=True, slots=True)
class NightSummary:
    """A few figures of the monitored night of one scoring run (for a list of runs).

    Attributes:
        night: The monitored night (the latest one that monitored the run).
        alerts: Its threshold breaches.
        drift_flagged: Drift items flagged that night, of ``drift_compared``.
        window_days: The longest window of the night.
        stays_known: Stays of known outcome in it.
        auroc: The mortality AUROC over it (``value``, ``low``, ``high``), if computed.
    """

    night: NightRecord
    alerts: int
    drift_flagged: int
    drift_compared: int
    window_days: int | None
    stays_known: int | None
    auroc: dict[str, Any] | None


def run_summaries(engine: Engine, run_ids: Sequence[str]) -> dict[str, NightSummary]:
    """Scoring run id -> the summary of the latest monitored night that judged that run."""
    latest: dict[str, NightRecord] = {}
    for night in read_nights(engine, run_ids=run_ids):
        if night.run_id is not None:
            latest[night.run_id] = night  # oldest first: the last one wins
    ids = [n.id for n in latest.values()]
    figures = [r for r in read_figures(engine, ids) if r["attribute"] == ""]
    drift, alerts = read_drift(engine, ids), read_alerts(engine, ids)
    out = {}
    for run_id, night in latest.items():
        own = [r for r in figures if r["night_id"] == night.id]
        longest = max((r["window_days"] for r in own), default=None)

        def at(metric: str, rows: list[dict[str, Any]] = own, w: int | None = longest) -> Any:
            return next((r for r in rows if (r["window_days"], r["metric"]) == (w, metric)), None)

        known = at("stays_known")
        items = [d for d in drift if d["night_id"] == night.id]
        out[run_id] = NightSummary(
            night=night,
            alerts=sum(a["night_id"] == night.id for a in alerts),
            drift_flagged=sum(bool(d["flagged"]) for d in items),
            drift_compared=len(items),
            window_days=longest,
            stays_known=None if known is None else int(known["value"] or 0),
            auroc=at("auroc"),
        )
    return out


def night_of_run(engine: Engine, run_id: str) -> VersionView | None:
    """The monitor's view as of the latest monitored night that judged scoring run
    ``run_id`` (that night is its ``latest``), or ``None`` when no night judged it."""
    found = read_nights(engine, run_ids=[run_id])
    if not found:
        return None
    night = found[-1]
    view = load_view(engine, until=night.as_of, model_version=night.model_version)
    return view.versions[0] if view.versions else None


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
