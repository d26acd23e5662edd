"""``evaluation.json`` and ``evaluation.html``: an evaluation record as files.

The HTML page is self-contained (inline SVG, no script, no network): what was evaluated and
on which patients, the notes in words, every model's figures with their intervals, the
mortality reliability diagram of DiPro next to the logistic regression, the spread of DiPro's
risks, the progression findings, and the subgroups. It shows no patient identifiers: the
record holds none.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from dipro_fhir.core.svg import bar_chart, interval_chart, reliability_plot

JSON_FILE: Final[str] = "evaluation.json"
#: Model names short enough for a chart's axis.
SHORT: Final[dict[str, str]] = {
    "dipro": "DiPro",
    "ehr_only": "DiPro, EHR only",
    "last_pair": "DiPro, last pair",
    "logistic": "logistic regression",
    "prevalence": "prevalence",
}
HTML_FILE: Final[str] = "evaluation.html"

#: The figures of the main table: task, figure, label.
TABLE: Final[tuple[tuple[str, str, str], ...]] = (
    ("mortality", "auroc", "mortality AUROC"),
    ("mortality", "auprc", "mortality AUPRC"),
    ("mortality", "brier", "mortality Brier (lower is better)"),
    ("mortality", "ece", "mortality ECE (lower is better)"),
    ("los", "accuracy", "LoS accuracy"),
    ("los", "macro_f1", "LoS macro-F1"),
    ("los", "kappa", "LoS kappa"),
    ("progression", "auroc", "progression mean AUROC"),
    ("progression", "macro_f1", "progression macro-F1"),
)


def write_evaluation(record: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write ``evaluation.json`` and ``evaluation.html`` into ``out`` (created), atomically."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (
        (JSON_FILE, json.dumps(record, indent=2) + "\n"),
        (HTML_FILE, render_html(record)),
    ):
        tmp = out / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
        paths.append(out / name)
    return paths[0], paths[1]


def _cell(figure: Any) -> str:
    if not isinstance(figure, dict) or figure.get("value") is None:
        return "–"
    low, high = figure.get("low"), figure.get("high")
    interval = "" if low is None or high is None else f" <small>({low:.3f}–{high:.3f})</small>"
    return f"{figure['value']:.3f}{interval}"


def figures_table(record: dict[str, Any]) -> str:
    """The main table: one row per figure, one column per model."""
    models = record["models"]
    names = list(models)
    head = "".join(f"<th>{html.escape(record['model_labels'][n])}</th>" for n in names)
    rows = []
    for task, figure, label in TABLE:
        if not any(task in models[n] for n in names):
            continue
        cells = "".join(f"<td>{_cell(models[n].get(task, {}).get(figure))}</td>" for n in names)
        rows.append(f"<tr><th>{html.escape(label)}</th>{cells}</tr>")
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _plots(record: dict[str, Any]) -> list[str]:
    models = record["models"]
    plots = []
    series: dict[str, Sequence[tuple[float, float, int]]] = {}
    for name in ("dipro", "logistic"):
        bins = models.get(name, {}).get("mortality", {}).get("reliability", [])
        points = [
            (b["mean_predicted"], b["observed"], b["patients"]) for b in bins if b["patients"]
        ]
        if points:
            series[record["model_labels"][name]] = points
    if series:
        plots.append(reliability_plot(series, "Mortality: observed rate by predicted risk"))
    histogram = record.get("risk_histogram") or []
    if histogram:
        labels = [f"{i / len(histogram):.2f}" if i % 4 == 0 else "" for i in range(len(histogram))]
        plots.append(bar_chart(labels, [float(c) for c in histogram], "DiPro mortality risks"))
    auroc = [
        (SHORT.get(n, n), models[n]["mortality"]["auroc"])
        for n in models
        if "mortality" in models[n] and models[n]["mortality"]["auroc"]["value"] is not None
    ]
    if auroc:
        rows = [(label, f["value"], f["low"], f["high"]) for label, f in auroc]
        plots.append(interval_chart(rows, "Mortality AUROC with 95 % intervals", 0.3, 1.0))
    return plots


def _progression_table(record: dict[str, Any]) -> str:
    models = {n: m["progression"] for n, m in record["models"].items() if "progression" in m}
    if not models:
        return ""
    dipro = models.get("dipro") or next(iter(models.values()))
    findings = [k.removeprefix("auroc:") for k in dipro if k.startswith("auroc:")]
    head = "".join(f"<th>{html.escape(record['model_labels'][n])}</th>" for n in models)
    rows = "".join(
        f"<tr><th>{html.escape(f)}</th>"
        + "".join(f"<td>{_cell(m.get(f'auroc:{f}'))}</td>" for m in models.values())
        + "</tr>"
        for f in findings
    )
    return f"<h2>Progression: AUROC per finding</h2><table><tr><th></th>{head}</tr>{rows}</table>"


def _subgroup_table(record: dict[str, Any]) -> str:
    if not record["subgroups"]:
        return ""

    def number(value: Any) -> str:
        return "–" if value is None else f"{value:.3f}"

    rows = []
    for s in record["subgroups"]:
        dipro, logistic = s.get("dipro", {}), s.get("logistic", {})
        interval = dipro.get("mortality_auroc_interval") or [None, None]
        ci = "" if None in interval else f" <small>({interval[0]:.2f}–{interval[1]:.2f})</small>"
        rows.append(
            f"<tr><td>{html.escape(s['attribute'])}</td><td>{html.escape(s['group'])}</td>"
            f"<td>{s['patients']}</td><td>{s['deaths']}</td>"
            f"<td>{number(dipro.get('mortality_auroc'))}{ci}</td>"
            f"<td>{number(logistic.get('mortality_auroc'))}</td>"
            f"<td>{number(dipro.get('mortality_brier'))}</td>"
            f"<td>{number(dipro.get('mortality_ece'))}</td>"
            f"<td>{number(dipro.get('los_accuracy'))}</td>"
            f"<td>{number(dipro.get('progression_auroc'))}</td></tr>"
        )
    return (
        "<h2>Subgroups</h2><table><tr><th>attribute</th><th>group</th><th>patients</th>"
        "<th>deaths</th><th>DiPro mortality AUROC</th><th>logistic AUROC</th><th>Brier</th>"
        "<th>ECE</th><th>LoS accuracy</th><th>progression AUROC</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def render_html(record: dict[str, Any]) -> str:
    """The evaluation page of ``record``."""
    checkpoint, patients = record["checkpoint"], record["patients"]
    source = html.escape(json.dumps(patients.get("source", {}), indent=1))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in record["notes"])
    return (
        "<!doctype html><meta charset='utf-8'><title>dipro-fhir evaluation</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:right}th{background:#f3f3f3}figure{display:inline-block;"
        "margin:8px}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}</style>"
        f"<h1>Evaluation of {html.escape(checkpoint['name'])} "
        f"{html.escape(checkpoint['version'])}</h1>"
        f"<p>{patients['examples']} patients evaluated (of {patients['patients']} read), "
        f"prediction times {html.escape(str(patients['first_prediction_time']))} to "
        f"{html.escape(str(patients['last_prediction_time']))}; 95 % intervals from "
        f"{record['bootstrap']['resamples']} bootstrap resamples of patients. Weights "
        f"<code>{html.escape(checkpoint['weights_sha256'][:16])}</code>, "
        f"{'calibrated' if checkpoint['calibrated'] else 'not calibrated'}.</p>"
        f"<h2>What these patients can show</h2><ul>{notes}</ul>"
        f"<h2>Figures</h2>{figures_table(record)}"
        + "".join(_plots(record))
        + _progression_table(record)
        + _subgroup_table(record)
        + f"<h2>Patients</h2><pre>{source}</pre>"
    )


def render_text(record: dict[str, Any]) -> str:
    """The main figures and notes as plain text, for the terminal."""
    models = record["models"]
    rows = [
        (task, figure, label)
        for task, figure, label in TABLE
        if any(task in m for m in models.values())
    ]
    width = max(len(label) for _, _, label in rows) if rows else 10
    lines = [f"{'':{width}s}  " + "  ".join(f"{n:>20s}" for n in models)]
    for task, figure, label in rows:
        cells = []
        for m in models.values():
            f = m.get(task, {}).get(figure)
            if isinstance(f, dict) and f.get("value") is not None:
                low, high = f.get("low"), f.get("high")
                ci = "" if low is None or high is None else f" ({low:.2f}-{high:.2f})"
                cells.append(f"{f['value']:.3f}{ci}")
            else:
                cells.append("-")
        lines.append(f"{label:{width}s}  " + "  ".join(f"{c:>20s}" for c in cells))
    lines += [f"- {note}" for note in record["notes"]]
    return "\n".join(lines)
