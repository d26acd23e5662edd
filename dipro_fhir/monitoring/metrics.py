"""The monitor's figures as OpenMetrics text, for Prometheus (and so a site's Grafana).

:func:`openmetrics_text` renders each model version's latest monitored night (the Airflow UI
plugin's FastAPI app serves it with :data:`CONTENT_TYPE`; Prometheus scrapes it):

* ``dipro_monitor_figure{model_version, window_days, attribute, group, metric}``: every
  figure's value, with ``..._low`` and ``..._high`` for its interval where it has one;
* ``dipro_monitor_drift{model_version, kind, item}``: each drift item's statistic (change
  or PSI), and ``dipro_monitor_drift_flagged`` 0 or 1;
* ``dipro_monitor_alerts{model_version, kind}``: breaches of the night by kind;
* ``dipro_monitor_night_timestamp_seconds{model_version}``: when the night was (a stale
  value tells Grafana the monitor stopped).

All are gauges (OpenMetrics 1.0 text format, ending ``# EOF``). Labels carry model versions,
windows, group names, variables and codes: no patient.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Final

from dipro_fhir.monitoring.view import MonitorView

CONTENT_TYPE: Final[str] = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ALERT_KINDS: Final[tuple[str, ...]] = (
    "calibration",
    "discrimination",
    "subgroup-gap",
    "length-of-stay",
    "progression",
    "drift",
)

_FAMILIES: Final[dict[str, str]] = {
    "dipro_monitor_figure": "A monitored figure of the latest night (value).",
    "dipro_monitor_figure_low": "A monitored figure's 95 % interval, low end.",
    "dipro_monitor_figure_high": "A monitored figure's 95 % interval, high end.",
    "dipro_monitor_drift": "A drift item's statistic tonight (change of a share, or PSI).",
    "dipro_monitor_drift_flagged": "Whether the drift item was flagged (1) tonight.",
    "dipro_monitor_alerts": "Threshold breaches of the latest night, by kind.",
    "dipro_monitor_night_timestamp_seconds": "When the latest monitored night was (Unix time).",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: Mapping[str, object]) -> str:
    return ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _samples(view: MonitorView) -> Iterator[tuple[str, dict[str, object], float]]:
    for v in view.versions:
        version: dict[str, object] = {"model_version": v.model_version}
        yield "dipro_monitor_night_timestamp_seconds", version, v.latest.as_of.timestamp()
        for row in v.figures:
            labels = {**version, "window_days": row["window_days"], "attribute": row["attribute"],
                      "group": row["group_name"], "metric": row["metric"]}  # fmt: skip
            for suffix, key in (("", "value"), ("_low", "low"), ("_high", "high")):
                if row[key] is not None:
                    yield f"dipro_monitor_figure{suffix}", labels, float(row[key])
        for d in v.drift:
            labels = {**version, "kind": d["kind"], "item": d["item"]}
            if d["statistic"] is not None:
                yield "dipro_monitor_drift", labels, float(d["statistic"])
            yield "dipro_monitor_drift_flagged", labels, float(bool(d["flagged"]))
        kinds = Counter(a["kind"] for a in v.alerts)
        for kind in ALERT_KINDS:
            yield "dipro_monitor_alerts", {**version, "kind": kind}, float(kinds[kind])


def openmetrics_text(view: MonitorView) -> str:
    """The latest night of every version as OpenMetrics text (see the module docstring)."""
    by_family: dict[str, list[str]] = {name: [] for name in _FAMILIES}
    for family, labels, value in _samples(view):
        by_family[family].append(f"{family}{{{_labels(labels)}}} {_value(value)}")
    lines = []
    for family, help_text in _FAMILIES.items():
        lines += [f"# TYPE {family} gauge", f"# HELP {family} {help_text}", *by_family[family]]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"
