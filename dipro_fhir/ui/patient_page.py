"""A patient's latest assessments, one block per task (read-only HTML).

Reached by id only (``/patients/{patient_id}``; the CDS Hooks cards link here); no list of
patients exists anywhere on the DiPro page. Per task: the headline score and its band, the
as-of time and how old it is, the model and its validation status, every outcome's score,
what the score rests on (CXR pairs or EHR only: the results database keeps the path, not the
resource references of ``RiskAssessment.basis``), and the patient's data problems and
failures in the run that wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from dipro_fhir.store.results import StoredScore
from dipro_fhir.ui.layout import age, badge, e, facts, page, segment, table, when
from dipro_fhir.ui.model_status import ModelStatus
from dipro_fhir.ui.queries import Assessment

TASK_TITLES = {
    "mortality": "In-hospital mortality",
    "los": "Length of stay",
    "progression": "Chest X-ray finding progression",
}
PATHS = {
    "pairs": "the EHR window and consecutive chest X-ray pairs",
    "ehr_only": "the EHR window only: fewer than two usable chest X-rays (EHR-only path)",
}


def _headline(assessment: Assessment) -> StoredScore:
    """The score a person reads first: death, the likeliest stay, the likeliest worsening."""
    scores = assessment.scores
    if assessment.task == "progression":
        worse = [s for s in scores if s.outcome.endswith(":worsened")]
        return max(worse or scores, key=lambda s: s.probability)
    return max(scores, key=lambda s: s.probability)


def _outcome(score: StoredScore) -> str:
    if score.task == "mortality":
        return "death in hospital"
    if score.task == "los":
        return f"stay {score.outcome}"
    finding, _, direction = score.outcome.partition(":")
    return f"{finding.replace('_', ' ')} {direction.replace('_', ' ')}"


def _band(level: str | None) -> str:
    colours = {"low": "#2f7d32", "moderate": "#b26a00", "high": "#c62828"}
    if level is None:
        return "—"
    return (
        f'<span class="badge" style="background:{colours.get(level, "#455a64")}">{e(level)}</span>'
    )


def _notes(assessment: Assessment, status: ModelStatus) -> list[str]:
    head = assessment.scores[0]
    notes = [f"Rests on {e(PATHS.get(head.path, head.path))}."]
    run = assessment.run
    if run is not None and run.mode == "shadow":
        notes.append("Shadow run: kept in the results database only, not written to FHIR.")
    elif head.fhir_resource_id:
        notes.append(f"Written to FHIR as RiskAssessment/{e(head.fhir_resource_id)}.")
    if assessment.problems:
        listed = ", ".join(f"{e(code)} × {n}" for code, n in assessment.problems)
        notes.append(f"Data problems in that run: {listed}.")
    if assessment.failures:
        notes.append(f"Failures in that run: {e(', '.join(assessment.failures))}.")
    if not status.card:
        notes.append(f"Model card: {e(status.note)}.")
    elif status.validated:
        notes.append(
            f"The model passes the validation gate ({e(status.validated_patients)} held-out "
            "patients)."
        )
    else:
        notes.append("The model is not validated: " + e("; ".join(status.problems)) + ".")
    if status.card and not status.clinical_use:
        notes.append("<b>Not for clinical use</b> (the model card's intended use).")
    return notes


def _block(assessment: Assessment, notes: Sequence[str], base: str, now: datetime) -> str:
    top = _headline(assessment)
    run = assessment.run
    night = (
        f'<a href="{e(base)}/runs/{segment(run.id)}">{e(run.kind)} run of {when(run.as_of)}</a> '
        f"{e(run.mode)} {badge(run.status)}"
        if run is not None
        else "—"
    )
    shown = [s for s in assessment.scores if assessment.task != "progression" or s is top
             or s.outcome.endswith(":worsened")]  # fmt: skip
    rows = [[e(_outcome(s)), f"{s.probability:.1%}", _band(s.risk_level)] for s in shown]
    left_out = len(assessment.scores) - len(shown)
    more = (
        f"<p class='muted'>{left_out} improved / no-change outcomes not shown.</p>"
        if left_out
        else ""
    )
    listed = f"<ul>{''.join(f'<li>{n}</li>' for n in notes)}</ul>" if notes else ""
    return (
        f"<h2>{e(TASK_TITLES.get(assessment.task, assessment.task))}</h2>"
        + facts(
            [
                (
                    "Score",
                    f"<b>{top.probability:.1%}</b> {e(_outcome(top))} {_band(top.risk_level)}",
                ),
                ("As of", f"{when(assessment.as_of)} ({e(age(assessment.as_of, now))})"),
                ("Model", e(f"{top.model_name} {top.model_version}")),
                ("Run", night),
            ]
        )
        + table(["Outcome", "Probability", "Band"], rows, numeric={1})
        + more
        + listed
    )


def patient_view(
    patient_id: str,
    assessments: Sequence[Assessment],
    status_of: Callable[[str, str], ModelStatus],
    base: str,
    now: datetime | None = None,
) -> str:
    """The patient's latest assessment per task, or a line saying there is none."""
    now = now or datetime.now(UTC)
    if not assessments:
        body = (
            f"<h1>Patient {e(patient_id)}</h1><p>No assessment of this patient is in the results "
            "database (not retracted).</p>"
        )
        return page(f"Patient {patient_id}", body, base)
    notes = [
        _notes(a, status_of(a.scores[0].model_name, a.scores[0].model_version)) for a in assessments
    ]
    # What every task's notes say (one run, one model) is said once, above the tasks.
    common = [n for n in notes[0] if all(n in other for other in notes[1:])]
    blocks = "".join(
        _block(a, [n for n in own if n not in common], base, now)
        for a, own in zip(assessments, notes, strict=True)
    )
    shared = f"<ul>{''.join(f'<li>{n}</li>' for n in common)}</ul>" if common else ""
    body = (
        f"<h1>Patient {e(patient_id)}</h1><p class='muted'>The latest assessment per task from "
        "the results database. A nightly score is computed from data up to its as-of time: it is "
        "hours old, and newer data is not in it.</p>" + shared + blocks
    )
    return page(f"Patient {patient_id}", body, base)
