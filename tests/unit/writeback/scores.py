"""Builders of realistic score sets for write-back tests (every outcome of every task)."""

from __future__ import annotations

from datetime import UTC, datetime

from dipro_fhir.core.scores import ModelInfo, Score, outcomes_for
from dipro_fhir.core.timeline import EncounterId, PatientId, ResourceRef, RunId

AS_OF = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
MODEL = ModelInfo("dipro", "1.0.0", "a" * 64)
TASKS = ("mortality", "los", "progression")


def patient_scores(
    patient: str,
    *,
    model: ModelInfo = MODEL,
    as_of: datetime = AS_OF,
    run_id: str = "run-1",
    n_observations: int = 3,
    path: str = "pairs",
) -> list[Score]:
    """Every outcome of every task for one patient, probabilities spread over [0, 1]."""
    basis = tuple(
        [ResourceRef("ImagingStudy", f"{patient}-cxr{i}") for i in range(2)]
        + [ResourceRef("Observation", f"{patient}-obs{i}", "1") for i in range(n_observations)]
    )
    scores = []
    for task in TASKS:
        outcomes = outcomes_for(task)
        for i, outcome in enumerate(outcomes):
            scores.append(
                Score(
                    patient_id=PatientId(patient),
                    encounter_id=EncounterId(f"{patient}-enc"),
                    task=task,
                    outcome=outcome,
                    probability=(i + 1) / (len(outcomes) + 1),
                    model_name=model.name,
                    model_version=model.version,
                    as_of=as_of,
                    run_id=RunId(run_id),
                    basis=basis,
                    path=path,
                )
            )
    return scores


def cohort_scores(n_patients: int, **kwargs: object) -> list[Score]:
    """Scores of ``n_patients`` patients ``pat-0000`` ...; keyword arguments as above."""
    out: list[Score] = []
    for i in range(n_patients):
        out += patient_scores(f"pat-{i:04d}", **kwargs)  # type: ignore[arg-type]
    return out
