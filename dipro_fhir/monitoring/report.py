"""The monitor's report: figures as inline SVG, an HTML fragment, a page, a terminal summary.

Each figure is a function of a :class:`~dipro_fhir.monitoring.view.VersionView` returning one
``<figure>`` (:mod:`dipro_fhir.core.svg`: no script, no network), so the Airflow UI page can
place them where it likes:

* :func:`calibration_figure`: observed death rate against mean predicted risk by decile;
* :func:`auroc_figure`: the AUROC over the nights, with its bootstrap interval, per window;
* :func:`subgroup_table`: every group's stays, deaths, AUROC (interval) beside everyone
  else's, Brier and ECE, the breached ones marked;
* :func:`drift_figure` and :func:`drift_table`: tonight's drift per variable and item.

:func:`report_fragment` puts one version's together (a ``<section>``, no page around it);
:func:`render_report` makes a self-contained page of every version; :func:`summary_text`
is what ``dipro-fhir monitor`` prints. No patient identifier appears: the tables hold none.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any, Final

from dipro.vocab import FINDINGS
from dipro_fhir.core.svg import horizontal_bars, reliability_plot, series_chart
from dipro_fhir.monitoring.performance import ATTRIBUTES, DECILES
from dipro_fhir.monitoring.view import MonitorView, VersionView

#: The window the calibration curve and the subgroup table show.
MAIN_WINDOW: Final[int] = 30
_STYLE: Final[str] = """
body{font-family:sans-serif;margin:2em;max-width:72em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.breach{color:#b00;font-weight:bold}.ok{color:#060}figure{display:inline-block;margin:0 1em 1em 0}
small{color:#666}
"""


def _number(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{float(value):.{digits}f}"


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row.get("value") is None:
        return "–"
    low, high = row.get("low"), row.get("high")
    span = "" if low is None or high is None else f" <small>({low:.2f}–{high:.2f})</small>"
    return f"{row['value']:.3f}{span}"


def calibration_figure(view: VersionView, window: int = MAIN_WINDOW) -> str:
    """Observed against predicted, by decile of predicted risk, over ``window`` days."""
    points = []
    for k in range(1, DECILES + 1):
        predicted = view.figure(window, f"decile{k}:predicted")
        observed = view.figure(window, f"decile{k}:observed")
        if predicted and observed and predicted["value"] is not None:
            points.append((predicted["value"], observed["value"], int(predicted["n"])))
    title = f"Calibration over {window} days: observed vs predicted by decile"
    if not points:
        title += " (too few stays of known outcome)"
    return reliability_plot({view.model_version: points}, title)


def auroc_figure(view: VersionView, windows: tuple[int, ...] = (7, 30)) -> str:
    """The mortality AUROC of each night, with its interval, per window."""
    series = {}
    for window in windows:
        series[f"{window} days"] = [
            (
                night.as_of.date().isoformat(),
                None if row is None else row["value"],
                None if row is None else row["low"],
                None if row is None else row["high"],
            )
            for night, row in view.over_time(window, "auroc")
        ]
    return series_chart(series, "Mortality AUROC over the nights (95 % interval)", threshold=0.5)


def subgroup_table(view: VersionView, window: int = MAIN_WINDOW) -> str:
    """Every group of the window: counts and figures, breached groups marked."""
    breached = {a["subject"] for a in view.alerts if a["kind"] == "subgroup-gap"}
    rows = []
    groups = sorted(
        {(r["attribute"], r["group_name"]) for r in view.figures
         if r["window_days"] == window and r["attribute"]},
        key=lambda g: (ATTRIBUTES.index(g[0]) if g[0] in ATTRIBUTES else 99, g[1]),
    )  # fmt: skip
    for attribute, group in groups:

        def get(metric: str, a: str = attribute, g: str = group) -> dict[str, Any] | None:
            return view.figure(window, metric, a, g)

        subject = f"{attribute}={group}"
        mark = ' class="breach"' if subject in breached else ""
        stays, deaths = get("stays"), get("deaths")
        rows.append(
            f"<tr{mark}><td>{html.escape(attribute)}</td><td>{html.escape(group)}</td>"
            f"<td>{_number(stays and stays['value'], 0)}</td>"
            f"<td>{_number(deaths and deaths['value'], 0)}</td><td>{_cell(get('auroc'))}</td>"
            f"<td>{_cell(get('auroc_rest'))}</td><td>{_cell(get('brier'))}</td>"
            f"<td>{_cell(get('ece'))}</td></tr>"
        )
    head = (
        "<tr><th>attribute</th><th>group</th><th>stays</th><th>deaths</th><th>AUROC</th>"
        "<th>AUROC of everyone else</th><th>Brier</th><th>ECE</th></tr>"
    )
    body = "".join(rows) or '<tr><td colspan="8">too few stays of known outcome</td></tr>'
    return f"<table>{head}{body}</table>"


def drift_figure(view: VersionView) -> str:
    """Tonight's largest coverage changes and distribution shifts per variable."""
    coverage = [
        (f"{d['item']} coverage", float(d["statistic"]), bool(d["flagged"]))
        for d in view.drift
        if d["kind"] == "coverage" and d["statistic"] is not None
    ]
    shifts = [
        (f"{d['item']} PSI", float(d["statistic"]), bool(d["flagged"]))
        for d in view.drift
        if d["kind"] == "distribution" and d["statistic"] is not None
    ]
    return horizontal_bars(coverage + shifts, "Drift per variable tonight (red: flagged)")


def drift_table(view: VersionView, only_flagged: bool = False) -> str:
    """Tonight's drift items other than per-variable distributions (and the flagged ones)."""
    rows = []
    for d in view.drift:
        if (only_flagged and not d["flagged"]) or (
            d["kind"] == "distribution" and not d["flagged"]
        ):
            continue
        mark = ' class="breach"' if d["flagged"] else ""
        p = "–" if d["p_value"] is None else f"{d['p_value']:.1e}"
        rows.append(
            f"<tr{mark}><td>{html.escape(d['kind'])}</td><td>{html.escape(d['item'])}</td>"
            f"<td>{_number(d['value'])}</td><td>{_number(d['reference'])}</td>"
            f"<td>{_number(d['statistic'])}</td><td>{p}</td></tr>"
        )
    head = (
        "<tr><th>kind</th><th>item</th><th>tonight</th><th>reference</th>"
        "<th>change or PSI</th><th>p</th></tr>"
    )
    body = "".join(rows) or '<tr><td colspan="6">nothing compared tonight</td></tr>'
    return f"<table>{head}{body}</table>"


def _headline(view: VersionView) -> str:
    cells = []
    for window in sorted({r["window_days"] for r in view.figures}):
        known, pending = view.figure(window, "stays_known"), view.figure(window, "stays_pending")
        beyond = view.figure(window, "stays_pending_beyond_horizon")
        apart = "" if beyond is None else f" <small>({beyond['value']:.0f} beyond)</small>"
        cells.append(
            f"<tr><td>{window} days</td><td>{_number(known and known['value'], 0)}</td>"
            f"<td>{_number(pending and pending['value'], 0)}{apart}</td>"
            + "".join(
                f"<td>{_cell(view.figure(window, m))}</td>"
                for m in ("auroc", "brier", "ece", "ppv:high", "sensitivity:high",
                          "alert_rate:high", "lead_time_h")
            )
            + "</tr>"
        )  # fmt: skip
    horizon = view.latest.counts.get("pending_horizon_days")
    label = "pending" if horizon is None else f"pending (beyond {horizon:g} days)"
    head = (
        f"<tr><th>window</th><th>stays known</th><th>{label}</th><th>AUROC</th>"
        "<th>Brier</th>"
        "<th>ECE</th><th>PPV (high)</th><th>sensitivity (high)</th><th>alert rate (high)</th>"
        "<th>lead time h (median, IQR)</th></tr>"
    )
    return f"<table>{head}{''.join(cells)}</table>"


def task_table(view: VersionView) -> str:
    """Length of stay and progression per window: stays, figures with intervals, and the
    progression AUROC of each finding."""
    findings = FINDINGS
    rows = []
    for window in sorted({r["window_days"] for r in view.figures}):
        los, prog = view.figure(window, "los:stays"), view.figure(window, "progression:stays")
        rows.append(
            f"<tr><td>{window} days</td><td>{_number(los and los['value'], 0)}</td>"
            + "".join(f"<td>{_cell(view.figure(window, f'los:{m}'))}</td>"
                      for m in ("accuracy", "macro_f1"))
            + f"<td>{_number(prog and prog['value'], 0)}</td>"
            + "".join(f"<td>{_cell(view.figure(window, f'progression:{m}'))}</td>"
                      for m in ("auroc", *(f"auroc:{f}" for f in findings)))
            + "</tr>"
        )  # fmt: skip
    head = (
        "<tr><th>window</th><th>LoS stays</th><th>LoS accuracy</th><th>LoS macro-F1</th>"
        "<th>progression stays</th><th>progression AUROC</th>"
        + "".join(f"<th>AUROC {html.escape(f.replace('_', ' '))}</th>" for f in findings)
        + "</tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def report_fragment(view: VersionView) -> str:
    """One version's section: status, alerts, figures, subgroups, drift (no page around)."""
    night = view.latest
    status = f'<span class="{"breach" if night.status == "breach" else "ok"}">{night.status}</span>'
    alerts = "".join(f"<li>{html.escape(a['message'])}</li>" for a in view.alerts)
    reference = night.reference
    source = reference.get("source") or "none yet"
    return (
        f'<section class="dipro-monitor" data-model-version="{html.escape(view.model_version)}">'
        f"<h2>{html.escape(view.model_name)} {html.escape(view.model_version)}</h2>"
        f"<p>Night of {night.as_of.isoformat()}: {status}; {len(view.nights)} nights "
        f"monitored; drift compared with: {html.escape(str(source))} "
        f"<small>{html.escape(str(reference.get('detail', '')))}</small></p>"
        + (f"<h3>Alerts</h3><ul>{alerts}</ul>" if alerts else "<p>No threshold breached.</p>")
        + "<h3>Performance</h3>"
        + _headline(view)
        + auroc_figure(view)
        + calibration_figure(view)
        + "<h3>Length of stay and progression</h3>"
        + task_table(view)
        + f"<h3>Subgroups over {MAIN_WINDOW} days</h3>"
        + subgroup_table(view)
        + "<h3>Drift tonight</h3>"
        + drift_figure(view)
        + drift_table(view)
        + "</section>"
    )


def render_report(view: MonitorView, title: str = "DiPro monitor") -> str:
    """A self-contained HTML page of every version."""
    sections = (
        "".join(report_fragment(v) for v in view.versions) or "<p>No night monitored yet.</p>"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{sections}"
        "</body></html>"
    )


def write_report(view: MonitorView, path: Path) -> Path:
    """Write :func:`render_report` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_report(view), encoding="utf-8")
    os.replace(tmp, path)
    return path


def summary_text(view: MonitorView) -> str:
    """A few lines per version for the terminal."""
    lines = []
    for v in view.versions:
        night = v.latest
        lines.append(f"{v.model_name} {v.model_version}  night {night.as_of.isoformat()}  "
                     f"{night.status}")  # fmt: skip
        for window in sorted({r["window_days"] for r in v.figures}):
            known, pending = v.figure(window, "stays_known"), v.figure(window, "stays_pending")
            auroc, ece = v.figure(window, "auroc"), v.figure(window, "ece")
            beyond = v.figure(window, "stays_pending_beyond_horizon")
            horizon = night.counts.get("pending_horizon_days")
            apart = (
                ""
                if beyond is None or horizon is None
                else f" ({beyond['value']:.0f} open beyond the {horizon:g}-day horizon)"
            )
            lines.append(
                f"  {window:>2} days: {_number(known and known['value'], 0)} stays known, "
                f"{_number(pending and pending['value'], 0)} pending{apart}; AUROC "
                f"{_plain(auroc)}, ECE {_plain(ece)}"
            )
            los, prog = v.figure(window, "los:stays"), v.figure(window, "progression:stays")
            lines.append(
                f"           length of stay ({_number(los and los['value'], 0)} stays): accuracy "
                f"{_plain(v.figure(window, 'los:accuracy'))}, macro-F1 "
                f"{_plain(v.figure(window, 'los:macro_f1'))}; progression "
                f"({_number(prog and prog['value'], 0)} stays): AUROC "
                f"{_plain(v.figure(window, 'progression:auroc'))}"
            )
        flagged = [d for d in v.drift if d["flagged"]]
        lines.append(f"  drift: {len(flagged)} flagged of {len(v.drift)} compared "
                     f"({night.reference.get('source') or 'no reference yet'})")  # fmt: skip
        lines += [f"  ALERT {a['message']}" for a in v.alerts]
    return "\n".join(lines) or "no night monitored yet"


def _plain(row: dict[str, Any] | None) -> str:
    if row is None or row.get("value") is None:
        return "–"
    if row.get("low") is None or row.get("high") is None:
        return f"{row['value']:.3f}"
    return f"{row['value']:.3f} ({row['low']:.3f}-{row['high']:.3f})"
