"""The night list and one night's page (HTML; docs/ui.md says what each figure means).

Both show counts only: no patient id appears on them. A night's page draws the risk
distribution per task with the run report's figure (:func:`~dipro_fhir.reports.run_report.
risk_figure`) and its data-quality text (:func:`~dipro_fhir.reports.run_report.quality_text`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from dipro_fhir.monitoring.report import report_fragment
from dipro_fhir.monitoring.view import MonitorView, NightSummary, VersionView
from dipro_fhir.reports.run_report import patient_values, risk_figure
from dipro_fhir.store.results import RunRecord, StoredScore
from dipro_fhir.ui.layout import badge, change, e, facts, page, percent, query, segment, table, when
from dipro_fhir.ui.model_status import ModelStatus
from dipro_fhir.ui.queries import TASK_ORDER, FailureCount, Night, NightPage, NightScores

BANDS = ("low", "moderate", "high")
#: The run's counts shown first (the rest are folded).
MAIN_COUNTS = ("patients", "scored", "failed_patients", "written", "unchanged")
MONITORING_NOTE = (
    "Performance over the nights (as outcomes arrive), calibration, subgroups and input drift "
    "are on the Monitoring page, filled by the dipro_monitor DAG."
)
NOT_MONITORED = (
    "No monitored night has judged this run yet: the dipro_monitor DAG (or dipro-fhir "
    "monitor) computes the night's drift and performance a few hours after a nightly run. "
    "Manual and backfill runs are not monitored."
)


def _count(run: RunRecord, key: str) -> str:
    value = run.counts.get(key)
    return "—" if value is None else e(value)


def _monitor_cell(summary: NightSummary | None, run_href: str) -> str:
    if summary is None:
        return "<span class='muted'>—</span>"
    auroc = summary.auroc
    figure = (
        "AUROC —"
        if auroc is None or auroc["value"] is None
        else f"AUROC {auroc['value']:.2f}"
        + ("" if auroc["low"] is None else f" ({auroc['low']:.2f}–{auroc['high']:.2f})")
    )
    window = "" if summary.window_days is None else f" over {summary.window_days} d"
    known = "" if summary.stays_known is None else f", {summary.stays_known} stays known"
    return (
        f'<a href="{run_href}#monitoring">{badge(summary.night.status)}</a> '
        f"{e(figure)}{e(window)}{e(known)};<br><small>drift flagged "
        f"{summary.drift_flagged} of {summary.drift_compared}; alerts {summary.alerts}</small>"
    )


def _night_row(night: Night, base: str, summary: NightSummary | None = None) -> list[str]:
    run, now, then = night.run, night.figures, night.baseline_figures

    def figure(name: str) -> float | None:
        return None if now is None else getattr(now, name)

    def before(name: str) -> float | None:
        return None if then is None else getattr(then, name)

    cov, unm, films = "coverage", "unmapped_observations", "films_left_out"
    href = f"{e(base)}/runs/{segment(run.id)}"
    return [
        f'<a href="{href}">{when(run.as_of)}</a>',
        e(run.kind),
        e(run.mode),
        badge(run.status),
        _count(run, "patients"),
        _count(run, "scored"),
        _count(run, "failed_patients"),
        f"{percent(figure(cov))} <small>{change(figure(cov), before(cov), points=True)}</small>",
        "—"
        if now is None
        else f"{now.unmapped_observations} <small>{change(figure(unm), before(unm))}</small>",
        "—"
        if now is None
        else f"{now.films_left_out} <small>{change(figure(films), before(films))}</small>",
        _monitor_cell(summary, href),
        e(f"{run.model_name} {run.model_version}"),
    ]


NIGHT_HEAD = [
    "As of",
    "Kind",
    "Mode",
    "Status",
    "Patients",
    "Scored",
    "Failed",
    "Coverage (Δ)",
    "Unmapped obs. (Δ)",
    "Films left out (Δ)",
    "Monitor",
    "Model",
]


def _pager(listing: NightPage, base: str, pipeline: str | None) -> str:
    parts = [f"<span>page {listing.page} of {listing.pages} ({listing.total} runs)</span>"]
    if listing.page > 1:
        href = f"{e(base)}/{query(page=listing.page - 1, pipeline=pipeline)}"
        parts.append(f'<a href="{href}">newer</a>')
    if listing.page < listing.pages:
        href = f"{e(base)}/{query(page=listing.page + 1, pipeline=pipeline)}"
        parts.append(f'<a href="{href}">older</a>')
    return f'<div class="pager">{"".join(parts)}</div>'


def night_list(
    listing: NightPage,
    base: str,
    pipeline: str | None = None,
    monitored: Mapping[str, NightSummary] | None = None,
) -> str:
    """The runs, newest first, with their counts, data quality against the baseline and the
    monitor's verdict on them (``monitored``: run id -> summary)."""
    found = monitored or {}
    rows = [_night_row(n, base, found.get(n.run.id)) for n in listing.nights]
    scope = f" of {e(pipeline)}" if pipeline else ""
    body = (
        f"<h1>Nights{scope}</h1><p class='muted'>Every run recorded in the results database, "
        "newest as-of time first. Δ: change from the latest successful nightly run before it "
        "(manual and backfill runs are never the baseline).</p>"
        + (
            table(NIGHT_HEAD, rows, numeric={4, 5, 6, 7, 8, 9})
            if rows
            else "<p>No run is recorded in the results database yet.</p>"
        )
        + _pager(listing, base, pipeline)
        + f"<p class='muted'>Monitor: the verdict of the dipro_monitor night that judged the "
        f"run (ok or breach), the mortality AUROC over its longest window, drift items flagged "
        f"and alerts. {e(MONITORING_NOTE)} <a href='{e(base)}/monitoring'>Monitoring</a></p>"
    )
    return page("Nights", body, base, here="nights")


def _bands(values: Sequence[StoredScore]) -> str:
    counted = Counter(v.risk_level or "none" for v in values)
    return ", ".join(f"{b} {counted[b]}" for b in (*BANDS, "none") if counted[b]) or "no scores"


def _risk_section(scores: NightScores) -> str:
    tasks = [t for t in TASK_ORDER if any(s.task == t for s in scores.scores)]
    if not tasks:
        return "<p>No score of this night's as-of time and model is in the database.</p>"
    figures = "".join(risk_figure(scores.scores, t) for t in tasks)
    rows = [[e(t), e(_bands(list(patient_values(scores.scores, t).values())))] for t in tasks]
    retracted = (
        f"<p>{scores.retracted} retracted scores are left out.</p>" if scores.retracted else ""
    )
    return f"{figures}{table(['Task', 'Patients per band'], rows)}{retracted}"


def _failure_section(failures: Sequence[FailureCount]) -> str:
    if not failures:
        return "<p>No failure was recorded.</p>"
    per_class = Counter[str]()
    for f in failures:
        per_class[f.reason_class] += f.patients
    summary = ", ".join(f"{e(c)} {n}" for c, n in sorted(per_class.items()))
    rows = [
        [e(f.reason_class), e(f.stage), e(f.reason), str(f.patients), str(f.unattributed),
         str(f.superseded)]
        for f in failures
    ]  # fmt: skip
    head = ["Class", "Stage", "Reason", "Patients", "No patient", "Superseded"]
    return f"<p>Failed patients by class: {summary}.</p>" + table(head, rows, numeric={3, 4, 5})


def _films_section(night: Night) -> str:
    quality, baseline = night.quality, night.baseline
    if quality is None:
        return "<p>No data-quality summary was recorded for this run.</p>"
    before = baseline.image_problems if baseline is not None else {}
    reasons = sorted(set(quality.image_problems) | set(before))
    if not reasons:
        return "<p>No film was left out.</p>"
    rows = [
        [
            e(reason),
            str(quality.image_problems.get(reason, 0)),
            change(quality.image_problems.get(reason, 0), before.get(reason, 0))
            if baseline is not None
            else change(None, None),
        ]
        for reason in reasons
    ]
    return table(["Reason", "Films", "Δ"], rows, numeric={1, 2})


def _model_section(status: ModelStatus) -> str:
    head = f"<p>{e(status.name)} <b>{e(status.version)}</b></p>"
    if not status.card:
        return head + f"<p class='muted'>{e(status.note)}</p>"
    if status.validated:
        source = f" ({e(status.validation_source)})" if status.validation_source else ""
        verdict = (
            f"<div class='ok'>Validated: passes the validation gate on "
            f"{e(status.validated_patients)} held-out patients{source}.</div>"
        )
    else:
        items = "".join(f"<li>{e(p)}</li>" for p in status.problems)
        verdict = f"<div class='warn'>Not validated: the gate refuses it.<ul>{items}</ul></div>"
    use = f"<p>Intended use: {e(status.intended_use)}</p>" if status.intended_use else ""
    if not status.clinical_use:
        use = f"<div class='warn'><b>Not for clinical use</b> (model card). {use}</div>"
    figures = ""
    if status.record and status.record.get("models"):
        from dipro_fhir.evaluation.report import figures_table

        figures = f"<details><summary>Validation figures</summary>{figures_table(status.record)}"
        figures += "</details>"
    return head + verdict + use + figures


def _run_facts(run: RunRecord, airflow: str) -> str:
    dag_run = "—"
    if run.dag_run_id:
        href = f"{e(airflow)}/dags/{segment(run.pipeline)}/runs/{segment(run.dag_run_id)}"
        dag_run = f'<a href="{href}" target="_top">{e(run.dag_run_id)}</a>'
    main = [f"{e(k.replace('_', ' '))} {e(run.counts[k])}" for k in MAIN_COUNTS if k in run.counts]
    every = ", ".join(f"{e(k)} {e(v)}" for k, v in sorted(run.counts.items()))
    counts = (", ".join(main) or "—") + (
        f" <details><summary>all counts</summary>{every}</details>" if every else ""
    )
    return facts(
        [
            ("Run", f"<code>{e(run.id)}</code>"),
            ("Airflow run", dag_run),
            ("Kind / mode", f"{e(run.kind)} / {e(run.mode)}"),
            ("Status", f"{badge(run.status)} after {e(run.attempts)} attempt(s)"),
            ("Started / finished", f"{when(run.started_at)} / {when(run.finished_at)}"),
            ("Counts", counts),
        ]
    )


def night_view(
    night: Night,
    scores: NightScores,
    failures: Sequence[FailureCount],
    status: ModelStatus,
    quality_text: str,
    base: str,
    airflow: str,
    monitored: VersionView | None = None,
) -> str:
    """One night: facts, model, risk distribution, failures, films left out, data quality,
    and the monitor's figures of the night that judged it (``monitored``)."""
    run = night.run
    figures = night.figures
    dq = (
        "<p>No data-quality summary was recorded for this run.</p>"
        if figures is None
        else _quality_figures(night)
    )
    body = (
        f"<p><a href='{e(base)}/'>← all nights</a></p>"
        f"<h1>Night of {when(run.as_of)} {badge(run.status)}</h1>"
        + _run_facts(run, airflow)
        + f"<h2>Model</h2>{_model_section(status)}"
        + f"<h2>Risk distribution per task</h2>{_risk_section(scores)}"
        + f"<h2>Failures by reason class and reason</h2>{_failure_section(failures)}"
        + f"<h2>Films left out</h2>{_films_section(night)}"
        + f"<h2>Data quality</h2>{dq}<pre>{e(quality_text)}</pre>"
        + f"<h2 id='monitoring'>Monitoring</h2>{_monitoring_section(monitored, base)}"
    )
    return page(f"Night of {run.as_of:%Y-%m-%d %H:%M}", body, base, here="nights")


def _monitoring_section(view: VersionView | None, base: str) -> str:
    if view is None:
        return f"<div class='placeholder'>{e(NOT_MONITORED)}</div>"
    night = view.latest
    return (
        f"<p class='muted'>The dipro_monitor night of {when(night.as_of)} judged this run: "
        "its drift against the reference, and the performance of the windows ending that "
        f"night over the stays whose outcome was known by then. Every night: "
        f"<a href='{e(base)}/monitoring'>Monitoring</a>.</p>" + report_fragment(view)
    )


def _quality_figures(night: Night) -> str:
    now, then = night.figures, night.baseline_figures
    assert now is not None
    baseline = (
        f"against {e(night.baseline_run)}"
        if night.baseline_run
        else "no baseline: no successful nightly run before this one (manual and backfill runs "
        "are never the baseline)"
    )

    def before(name: str) -> float | None:
        return None if then is None else getattr(then, name)

    rows = [
        ["Patients mapped", str(now.patients), change(now.patients, before("patients"))],
        ["Coverage", percent(now.coverage), change(now.coverage, before("coverage"), points=True)],
        ["Unmapped Observations", str(now.unmapped_observations),
         change(now.unmapped_observations, before("unmapped_observations"))],
        ["Films left out", str(now.films_left_out),
         change(now.films_left_out, before("films_left_out"))],
    ]  # fmt: skip
    return f"<p class='muted'>Δ {baseline}.</p>" + table(["Figure", "Value", "Δ"], rows, {1, 2})


def monitoring_view(view: MonitorView, base: str) -> str:
    """The monitor's page: one section per monitored model version (its report fragment), or
    a line saying that no night has been monitored yet."""
    sections = "".join(report_fragment(v) for v in view.versions)
    empty = (
        "<p>No night monitored yet: the <code>dipro_monitor</code> DAG (or "
        "<code>dipro-fhir monitor</code>) gathers outcomes and computes the figures.</p>"
    )
    body = (
        "<h1>Monitoring</h1><p class='muted'>Per model version: performance over the nights as "
        f"outcomes arrive, calibration, subgroups, input drift and alerts. As OpenMetrics: "
        f"<a href='{e(base)}/metrics'>metrics</a>.</p>" + (sections or empty)
    )
    return page("Monitoring", body, base, here="monitoring")
