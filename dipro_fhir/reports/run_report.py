"""A small self-contained HTML report of a scoring run on a synthetic cohort.

Plots are inline SVG drawn here (no plotting library, no network): the risk distribution
(:func:`risk_figure`, per task; the DiPro page in Airflow, :mod:`dipro_fhir.ui`, draws a
night's with it too), mortality calibration against the synthetic ground truth, and one
patient's timeline (CXR acquisition times over three EHR signals in the 48-hour window),
then the run's data-quality summary (unmapped codes with counts, coverage per variable,
unusable images, problems of no patient, and the change since the previous successful
night). It also returns a plain text table for the terminal.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, select

from dipro.vocab import LOS_BINS, VARIABLES
from dipro_fhir.core.settings import Settings
from dipro_fhir.core.svg import (
    PAD,
    H,
    W,
    bar_chart,
    calibration_plot,
    svg_figure,
    x_at,
    x_ticks,
    y_at,
)
from dipro_fhir.core.timeline import RunId
from dipro_fhir.mapping.quality import compare, render_quality
from dipro_fhir.reports.risk_spread import risk_spread_table
from dipro_fhir.run import connections
from dipro_fhir.store.models import Run
from dipro_fhir.store.quality import previous_success, read_data_quality
from dipro_fhir.store.results import RunRecord, StoredScore


def timeline_plot(
    hours: np.ndarray[Any, Any],
    series: dict[str, np.ndarray[Any, Any]],
    cxr_hours: Sequence[float],
    title: str,
) -> str:
    """Each EHR signal scaled to its own range over hours 0-48, with CXR times as lines."""
    colours = ("#4a78b5", "#c0504d", "#9bbb59")
    body = []
    for colour, (name, values) in zip(colours, series.items(), strict=False):
        ok = np.isfinite(values)
        if not ok.any():
            continue
        lo, hi = float(values[ok].min()), float(values[ok].max())
        pts = " ".join(
            f"{x_at(h, 0, 48):.1f},{y_at(v, lo, hi + 1e-9):.1f}"
            for h, v in zip(hours[ok], values[ok], strict=True)
        )
        body.append(f'<polyline points="{pts}" fill="none" stroke="{colour}"/>')
        legend_x = PAD + 130 * (len(body) // 2)
        body.append(
            f'<text x="{legend_x}" y="{PAD - 12}" fill="{colour}">{html.escape(name)}</text>'
        )
    for h in cxr_hours:
        if 0 <= h <= 48:
            x = x_at(h, 0, 48)
            body.append(
                f'<line x1="{x:.1f}" y1="{PAD}" x2="{x:.1f}" y2="{H - PAD}" stroke="black"/>'
            )
    body.append(x_ticks((0, 12, 24, 36, 48), 0, 48))
    body.append(
        f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle">hours in window (lines: CXRs)</text>'
    )
    return svg_figure("".join(body), title)


def _latest_run(settings: Settings) -> RunRecord:
    store = connections.result_store(settings)
    with store.engine.connect() as conn:
        run_id = conn.execute(select(Run.id).order_by(Run.started_at.desc())).scalar()
    record = None if run_id is None else store.run(RunId(run_id))
    if record is None:
        raise RuntimeError("no run recorded in the results database")
    return record


def write_report(settings: Settings, cohort: Path, out: Path, as_of: datetime) -> dict[str, Any]:
    """Write the HTML report for the latest run and return ``{"table": str, ...}`` (``spread``:
    the risk spread per task, for the terminal)."""
    from dipro_fhir.synth import read_truth

    run = _latest_run(settings)
    if run.status not in ("success", "partial"):
        raise RuntimeError(f"the latest run {run.id} ended with status {run.status!r}")
    # Scores first written by an earlier run of the same night keep that run's id.
    store = connections.result_store(settings)
    scores = [s for s in store.scores(model_version=run.model_version) if s.as_of == run.as_of]
    truths = {t.patient_id: t for t in read_truth(cohort / "truth.jsonl")}
    mortality = {str(s.patient_id): s.probability for s in scores if s.task == "mortality"}
    figures = [
        _risk_distribution(scores),
        _calibration(mortality, truths),
        _one_patient(settings, cohort, scores, as_of),
    ]
    table = _table(scores, run)
    quality = data_quality_text(settings, run)
    validation = _validation_html(settings.model.checkpoint)
    out.write_text(
        "<!doctype html><meta charset='utf-8'><title>dipro-fhir demo report</title>"
        "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto}"
        "figure{display:inline-block;margin:8px}"
        "pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}</style>"
        f"<h1>dipro-fhir demo run</h1><p>Run <code>{html.escape(run.id)}</code>, as of "
        f"{html.escape(run.as_of.isoformat())}, model {html.escape(run.model_name)} "
        f"{html.escape(run.model_version)}, status <b>{html.escape(run.status)}</b>. "
        "Synthetic data; the demo checkpoint is <b>not for clinical use</b>.</p>"
        f"<pre>{html.escape(table)}</pre>" + "".join(figures) + validation + "<h2>Data quality</h2>"
        f"<pre>{html.escape(quality)}</pre>",
        encoding="utf-8",
    )
    return {
        "table": table,
        "spread": risk_spread_table(scores, run.counts or {}),
        "run_id": run.id,
        "patients": len(mortality),
        "status": run.status,
        "data_quality": quality,
    }


def _validation_html(checkpoint: Path) -> str:
    """The checkpoint's validation on held-out patients, next to its baselines."""
    from dipro_fhir.evaluation.report import HTML_FILE, figures_table
    from dipro_fhir.scoring.card import read_model_card

    record = read_model_card(checkpoint).validation
    if not record:
        return "<h2>Validation</h2><p>The checkpoint has no validation record.</p>"
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in record["notes"])
    return (
        f"<h2>The checkpoint's validation on {record['patients']['examples']} held-out "
        f"patients</h2>{figures_table(record)}<ul>{notes}</ul>"
        f"<p>Every figure, plot and subgroup: <code>{html.escape(str(checkpoint / HTML_FILE))}"
        "</code>.</p>"
    )


def data_quality_text(settings: Settings, run: RunRecord) -> str:
    """The run's data-quality summary, compared with the previous successful night."""
    return quality_text(connections.result_store(settings).engine, run)


def quality_text(engine: Engine, run: RunRecord) -> str:
    """:func:`data_quality_text` on an open results database."""
    quality = read_data_quality(engine, run.id)
    if quality is None:
        return "no data-quality summary was recorded for this run"
    previous = previous_success(
        engine, pipeline=run.pipeline, model_name=run.model_name, before=run.as_of
    )
    before = None if previous is None else read_data_quality(engine, previous)
    change = None if previous is None or before is None else compare(quality, before, previous)
    return render_quality(quality, change)


def _risk_distribution(scores: Sequence[StoredScore]) -> str:
    return risk_figure(scores, "mortality")


#: Per task: what one patient's value is, and the figure's caption.
RISK_CAPTIONS = {
    "mortality": "Patients per predicted in-hospital mortality risk",
    "progression": "Patients per highest predicted risk of a finding worsening",
    "los": "Patients per most likely length-of-stay bin",
}


def patient_values(scores: Sequence[StoredScore], task: str) -> dict[str, StoredScore]:
    """One score per patient for ``task``: mortality's (death), the most likely length-of-stay
    bin, the finding most likely to worsen (progression's ``<finding>:worsened``)."""
    chosen: dict[str, StoredScore] = {}
    for s in scores:
        if s.task != task or (task == "progression" and not s.outcome.endswith(":worsened")):
            continue
        best = chosen.get(s.patient_id)
        if best is None or s.probability > best.probability:
            chosen[s.patient_id] = s
    return chosen


def risk_figure(scores: Sequence[StoredScore], task: str) -> str:
    """The distribution of ``task``'s scores over patients (:func:`patient_values`) as an
    inline SVG bar chart: ten probability bins, or the length-of-stay bins."""
    values = list(patient_values(scores, task).values())
    if task == "los":
        labels = list(LOS_BINS)
        counts = [float(sum(v.outcome == b for v in values)) for b in labels]
        return bar_chart(labels, counts, f"{RISK_CAPTIONS[task]} ({len(values)} patients)")
    probabilities = [v.probability for v in values]
    bins = np.histogram(probabilities, bins=10, range=(0, 1))[0] if values else np.zeros(10)
    labels = [f"{lo:.1f}" for lo in np.linspace(0, 0.9, 10)]
    caption = RISK_CAPTIONS.get(task, f"Patients per predicted {task} risk")
    return bar_chart(labels, [float(c) for c in bins], f"{caption} ({len(values)} patients)")


def _calibration(mortality: Mapping[str, float], truths: Mapping[str, Any]) -> str:
    ids = [p for p in mortality if p in truths]
    return calibration_plot(
        [mortality[p] for p in ids],
        [truths[p].mortality for p in ids],
        f"Mortality calibration on synthetic ground truth ({len(ids)} patients)",
    )


def _one_patient(
    settings: Settings, cohort: Path, scores: Sequence[StoredScore], as_of: datetime
) -> str:
    from dipro_fhir.core.scores import PatientFailure
    from dipro_fhir.core.timeline import PatientId
    from dipro_fhir.run.extract import extract_options, extract_patient

    pairs = sorted({s.patient_id for s in scores if s.path == "pairs"})
    if not pairs:
        return ""
    options = extract_options(settings, crop_size=32, max_cxrs=6)
    tl = extract_patient(
        connections.fhir_source(settings),
        connections.image_source(settings.dicomweb),
        PatientId(pairs[0]),
        None,
        as_of,
        options,
    )
    if isinstance(tl, PatientFailure):
        return ""
    names = ("heart_rate", "oxygen_saturation", "respiratory_rate")
    series = {n: tl.ehr_values[:, VARIABLES.index(n)] for n in names}
    cxrs = [i.hours_since_window_start for i in tl.images]
    return timeline_plot(
        tl.ehr_hours, series, cxrs, "One patient's window: EHR signals and CXR times"
    )


def _table(scores: Sequence[StoredScore], run: RunRecord) -> str:
    by_patient: dict[str, dict[str, Any]] = {}
    for s in scores:
        row = by_patient.setdefault(s.patient_id, {"path": s.path, "los": (0.0, "")})
        if s.task == "mortality":
            row["mortality"] = s.probability
            row["risk"] = s.risk_level
        elif s.task == "los" and s.probability > row["los"][0]:
            row["los"] = (s.probability, s.outcome)
        elif (
            s.task == "progression"
            and s.outcome.endswith(":worsened")
            and s.probability > row.get("worse", (0.0, ""))[0]
        ):
            row["worse"] = (s.probability, s.outcome.split(":")[0])
    header = f"{'patient':14s} {'mortality':>9s} {'risk':8s} {'LoS':6s} {'path':9s}"
    lines = [header + " most likely worsening"]
    for pid, row in sorted(by_patient.items())[:12]:
        worse = row.get("worse")
        lines.append(
            f"{pid:14s} {row.get('mortality', float('nan')):9.2f} {row.get('risk')!s:8s} "
            f"{row['los'][1]:6s} {row['path']:9s} "
            + (f"{worse[1]} ({worse[0]:.2f})" if worse else "-")
        )
    if len(by_patient) > 12:
        lines.append(f"... {len(by_patient) - 12} more patients")
    counts = run.counts or {}
    lines.append(f"{len(by_patient)} patients scored; run counts {dict(counts)}")
    return "\n".join(lines)
