"""The site's thresholds on a night's figures and drift, and the check that fails on a breach.

Thresholds are settings (``DIPRO_MONITOR__...``, :class:`~dipro_fhir.core.settings.
MonitorSettings`). A performance alert needs a window with enough stays of known outcome and
the bootstrap interval past the threshold, so noise in a small window never raises one:

* ``calibration``: the ECE interval's low end above ``max_ece``, and the ECE above what a
  calibrated model would show on as many stays (``ece_if_calibrated``);
* ``discrimination``: the AUROC interval's high end below ``min_auroc``;
* ``subgroup-gap``: a group's AUROC ``max_subgroup_gap`` or more below everyone else's, with
  the group's interval's high end below everyone else's AUROC (groups with enough stays,
  deaths and survivors only);
* ``length-of-stay``: the LoS macro-F1 interval's high end below ``min_los_macro_f1``, and
  ``progression``: the progression AUROC interval's high end below
  ``min_progression_auroc``, each in a window with ``min_outcomes`` stays of that outcome
  (:mod:`dipro_fhir.monitoring.task_performance`; both off at 0, the default);
* ``drift``: every flagged drift item (:mod:`dipro_fhir.monitoring.drift`).

:func:`check_night` reads the alerts recorded for a night and raises :class:`MonitorBreach`
with one line naming each breach's metric, window, value and threshold: the ``check`` task of
the ``dipro_monitor`` DAG fails with it, and Airflow's own alerting carries it. The night's
results are written before (they stay).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.core.settings import MonitorSettings, Settings
from dipro_fhir.monitoring.drift import DriftItem
from dipro_fhir.monitoring.performance import Figure
from dipro_fhir.run import connections
from dipro_fhir.store.monitoring import read_alerts, read_nights
from dipro_fhir.store.runs import as_utc


class MonitorBreach(DiproFhirError):
    """A monitored night breached a site threshold (the message names each breach)."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One breach: ``window`` is ``<n>d`` (performance) or ``night`` (drift)."""

    kind: str
    metric: str
    window: str
    subject: str
    value: float
    threshold: float
    message: str


Key = tuple[int, str, str, str]


def _index(figures: Sequence[Figure]) -> dict[Key, Figure]:
    return {(f.window_days, f.attribute, f.group, f.metric): f for f in figures}


def _enough(at: Mapping[Key, Figure], key: tuple[int, str, str], stays: int, events: int) -> bool:
    window, attribute, group = key
    known = at.get((window, attribute, group, "stays_known" if not attribute else "stays"))
    deaths = at.get((window, attribute, group, "deaths"))
    if known is None or deaths is None or known.value is None or deaths.value is None:
        return False
    survivors = known.value - deaths.value
    return known.value >= stays and deaths.value >= events and survivors >= events


def _enough_rest(
    at: Mapping[Key, Figure], key: tuple[int, str, str], limits: MonitorSettings
) -> bool:
    """Everyone else than the group meets the group minimums too: an AUROC of 1.000 from two
    deaths is no yardstick for a gap."""
    window, attribute, group = key
    figures = [
        at.get((window, "", "", "stays_known")),
        at.get((window, "", "", "deaths")),
        at.get((window, attribute, group, "stays")),
        at.get((window, attribute, group, "deaths")),
    ]
    values = [float(f.value) for f in figures if f is not None and f.value is not None]
    if len(values) < len(figures):
        return False
    known, deaths, group_known, group_deaths = values
    rest_known, rest_deaths = known - group_known, deaths - group_deaths
    return (
        rest_known >= limits.min_group_outcomes
        and rest_deaths >= limits.min_events
        and rest_known - rest_deaths >= limits.min_events
    )


def _span(f: Figure) -> str:
    return "" if f.low is None or f.high is None else f" ({f.low:.3f}-{f.high:.3f})"


def performance_alerts(figures: Sequence[Figure], limits: MonitorSettings) -> list[Alert]:
    """Calibration, discrimination and subgroup-gap breaches of a night's figures."""
    at = _index(figures)
    out = []
    for window in sorted({f.window_days for f in figures}):
        if not _enough(at, (window, "", ""), limits.min_outcomes, limits.min_events):
            continue
        ece, auroc = at.get((window, "", "", "ece")), at.get((window, "", "", "auroc"))
        chance = at.get((window, "", "", "ece_if_calibrated"))
        if (
            ece
            and ece.value is not None
            and ece.low is not None
            and ece.low > limits.max_ece
            and (chance is None or chance.value is None or ece.value > chance.value)
        ):
            out.append(Alert("calibration", "ece", f"{window}d", "", ece.value, limits.max_ece,
                             f"calibration: ECE {ece.value:.3f}{_span(ece)} over {window} days "
                             f"above the threshold {limits.max_ece:.3f}"))  # fmt: skip
        if auroc and auroc.value is not None and auroc.high is not None:
            out += _discrimination(auroc, window, limits)
        out += _gaps(at, window, limits)
    for window in sorted({f.window_days for f in figures}):
        out += _task_alerts(at, window, limits)
    return out


#: Kind, the stays counted, the figure judged, its words, the setting's name.
_TASK_RULES = (
    ("length-of-stay", "los:stays", "los:macro_f1", "length-of-stay macro-F1",
     "min_los_macro_f1"),
    ("progression", "progression:stays", "progression:auroc", "progression AUROC",
     "min_progression_auroc"),
)  # fmt: skip


def _task_alerts(at: Mapping[Key, Figure], window: int, limits: MonitorSettings) -> list[Alert]:
    """Length-of-stay and progression breaches: the interval's high end below the minimum."""
    out = []
    for kind, count, metric, words, setting in _TASK_RULES:
        threshold: float = getattr(limits, setting)
        stays, figure = at.get((window, "", "", count)), at.get((window, "", "", metric))
        if threshold <= 0 or stays is None or (stays.value or 0) < limits.min_outcomes:
            continue
        if figure is None or figure.value is None or figure.high is None:
            continue
        if figure.high < threshold:
            out.append(Alert(kind, metric, f"{window}d", "", figure.value, threshold,
                             f"{kind}: {words} {figure.value:.3f}{_span(figure)} over {window} "
                             f"days below the threshold {threshold:.3f}"))  # fmt: skip
    return out


def _discrimination(auroc: Figure, window: int, limits: MonitorSettings) -> list[Alert]:
    if auroc.value is None or auroc.high is None or auroc.high >= limits.min_auroc:
        return []
    message = (
        f"discrimination: AUROC {auroc.value:.3f}{_span(auroc)} over {window} days below "
        f"the threshold {limits.min_auroc:.3f}"
    )
    return [Alert("discrimination", "auroc", f"{window}d", "", auroc.value, limits.min_auroc,
                  message)]  # fmt: skip


def _gaps(at: Mapping[Key, Figure], window: int, limits: MonitorSettings) -> list[Alert]:
    out = []
    groups = sorted({(k[1], k[2]) for k in at if k[0] == window and k[1]})
    for attribute, group in groups:
        if not _enough(
            at, (window, attribute, group), limits.min_group_outcomes, limits.min_events
        ) or not _enough_rest(at, (window, attribute, group), limits):
            continue
        auroc = at.get((window, attribute, group, "auroc"))
        rest = at.get((window, attribute, group, "auroc_rest"))
        if not auroc or not rest or auroc.value is None or rest.value is None:
            continue
        gap = rest.value - auroc.value
        if gap >= limits.max_subgroup_gap and auroc.high is not None and auroc.high < rest.value:
            subject = f"{attribute}={group}"
            out.append(Alert("subgroup-gap", "auroc", f"{window}d", subject, gap,
                             limits.max_subgroup_gap,
                             f"subgroup gap: AUROC of {subject} {auroc.value:.3f}{_span(auroc)} "
                             f"is {gap:.3f} below everyone else's {rest.value:.3f} over {window} "
                             f"days (threshold {limits.max_subgroup_gap:.3f})"))  # fmt: skip
    return out


def drift_threshold(item: DriftItem, limits: MonitorSettings) -> float:
    """The threshold a drift item is judged by."""
    return {
        "coverage": limits.coverage_change,
        "pair-share": limits.coverage_change,
        "distribution": limits.max_psi,
        "scores": limits.max_psi,
        "unmapped-share": limits.unmapped_change,
        "unusable-films": limits.unusable_change,
        "new-unmapped-code": float(limits.new_code_observations),
    }[item.kind]


def _drift_message(item: DriftItem, threshold: float) -> str:
    p = "" if item.p_value is None else f", p={item.p_value:.1e}"
    if item.kind in ("distribution", "scores"):
        return (
            f"drift: {item.kind} of {item.item} PSI {item.statistic:.3f} tonight "
            f"(threshold {threshold:.3f}{p})"
        )
    if item.kind == "new-unmapped-code":
        return (
            f"drift: new unmapped code {item.item} on {item.value:.0f} Observations tonight "
            f"(threshold {threshold:.0f})"
        )
    return (
        f"drift: {item.kind} of {item.item} {item.value:.3f} tonight vs {item.reference:.3f} in "
        f"the reference (change {item.statistic:+.3f}, threshold {threshold:.3f}{p})"
    )


def drift_alerts(items: Sequence[DriftItem], limits: MonitorSettings) -> list[Alert]:
    """One alert per flagged drift item."""
    out = []
    for item in items:
        if not item.flagged or item.statistic is None:
            continue
        threshold = drift_threshold(item, limits)
        out.append(Alert("drift", item.kind, "night", item.item, item.statistic, threshold,
                         _drift_message(item, threshold)))  # fmt: skip
    return out


def breach_line(alerts: Sequence[Mapping[str, Any]], model_version: str) -> str:
    """One line naming every breach (metric, window, value, threshold)."""
    return f"model version {model_version}: " + "; ".join(a["message"] for a in alerts)


def check_night(settings: Settings, as_of: datetime) -> list[dict[str, Any]]:
    """The alerts recorded for the night ``as_of``; raise :class:`MonitorBreach` if any.

    Raises:
        MonitorBreach: One line per model version with every breach of the night.
    """
    engine = connections.engine(settings)
    nights = [n for n in read_nights(engine, until=as_of) if n.as_of == as_utc(as_of)]
    found = read_alerts(engine, [n.id for n in nights])
    if found:
        lines = [
            breach_line([a for a in found if a["night_id"] == n.id], n.model_version)
            for n in nights
            if any(a["night_id"] == n.id for a in found)
        ]
        raise MonitorBreach(" | ".join(lines))
    return found
