"""Three recorded runs in a results database, written through the store as the pipeline does.

For the DiPro page's tests: two nightly runs a day apart (the second ``partial``, with
failures, more films left out, an unmapped code whose display holds markup) and a manual
shadow run later the same day. :func:`seed_nights` returns what it wrote, so a test computes
what the page must show from the inputs, not from the page's own code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_CLASSES
from dipro_fhir.core.scores import PatientFailure, Score
from dipro_fhir.core.timeline import EncounterId, MappingIssue, PatientId, RunId
from dipro_fhir.mapping.quality import DataQuality
from dipro_fhir.store import ResultStore
from dipro_fhir.store.quality import record_data_quality

MODEL_NAME = "dipro-ui-test"
MODEL_VERSION = "0.0.7"
FIRST_NIGHT = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
#: An Observation's coding display, from the source data: it must reach the page as text.
MARKUP = '<img src=x onerror="alert(1)">'


@dataclass(frozen=True)
class SeededRun:
    """What one seeded run holds."""

    run_id: RunId
    dag_run_id: str
    as_of: datetime
    kind: str
    mode: str
    status: str
    patients: tuple[str, ...]
    failed: dict[str, tuple[str, str, bool]]  # patient -> (stage, reason, retriable)
    quality: DataQuality
    scores: list[Score] = field(default_factory=list)

    @property
    def scored(self) -> tuple[str, ...]:
        return tuple(p for p in self.patients if p not in self.failed)


def _softmax(raw: np.ndarray) -> np.ndarray:
    weights = np.exp(raw - raw.max())
    return weights / weights.sum()  # type: ignore[no-any-return]


def _scores(run: RunId, patient: str, as_of: datetime, rng: np.random.Generator) -> list[Score]:
    def score(task: str, outcome: str, probability: float) -> Score:
        return Score(
            PatientId(patient), EncounterId(f"{patient}-enc"), task, outcome,
            float(round(probability, 4)), MODEL_NAME, MODEL_VERSION, as_of, run,
        )  # fmt: skip

    out = [score("mortality", "death", rng.beta(2, 5))]
    out += [score("los", b, p) for b, p in zip(LOS_BINS, _softmax(rng.normal(size=4)), strict=True)]
    for finding in FINDINGS:
        probabilities = _softmax(rng.normal(size=len(PROGRESSION_CLASSES)))
        out += [
            score("progression", f"{finding}:{c}", p)
            for c, p in zip(PROGRESSION_CLASSES, probabilities, strict=True)
        ]
    return out


def _quality(patients: int, films: dict[str, int], unmapped: int) -> DataQuality:
    return DataQuality.from_json(
        {
            "patients": patients,
            "unmapped_codes": {"https://lab.example.org|NA-X": unmapped},
            "code_displays": {"https://lab.example.org|NA-X": MARKUP},
            "variable_patients": {"heart_rate": patients, "sodium": patients // 2},
            "image_problems": films,
        }
    )


def _record(store: ResultStore, run: SeededRun, rng: np.random.Generator) -> SeededRun:
    store.start_run(
        run.run_id,
        as_of=run.as_of,
        model_name=MODEL_NAME,
        model_version=MODEL_VERSION,
        dag_run_id=run.dag_run_id,
        mode=run.mode,
        kind=run.kind,
    )
    for patient in run.scored:
        run.scores.extend(_scores(run.run_id, patient, run.as_of, rng))
    failures = [
        PatientFailure(PatientId(p), stage, reason, "seeded", retriable)
        for p, (stage, reason, retriable) in run.failed.items()
    ]
    issues = {
        PatientId(run.scored[0]): [
            MappingIssue("regions-not-found", "ImagingStudy/x", "no lungs found")
        ]
    }
    store.record_chunk(run.run_id, run.scores, failures, issues)
    record_data_quality(store.engine, run.run_id, run.quality)
    counts = {
        "patients": len(run.patients),
        "scored": len(run.scored),
        "failed_patients": len(run.failed),
    }
    store.finish_run(run.run_id, status=run.status, counts=counts, timings_s={"score": 1.5})
    return run


def seed_nights(store: ResultStore, seed: int = 5) -> list[SeededRun]:
    """Record the three runs (oldest first) and return them."""
    rng = np.random.default_rng(seed)
    patients = tuple(f"ui-pat-{i:02d}" for i in range(7))
    second = FIRST_NIGHT + timedelta(days=1)
    runs = [
        SeededRun(
            RunId("run-ui-first"), "scheduled__2026-11-22T02:00:00+00:00", FIRST_NIGHT,
            "nightly", "live", "success", patients[:6], {},
            _quality(6, {"regions-not-found": 1}, unmapped=4),
        ),
        SeededRun(
            RunId("run-ui-second"), "scheduled__2026-11-23T02:00:00+00:00", second,
            "nightly", "live", "partial", patients,
            {
                patients[5]: ("extract", "source-unavailable", True),
                patients[6]: ("map", "no-encounter", False),
            },
            _quality(6, {"regions-not-found": 3, "corrupt-dicom": 1}, unmapped=9),
        ),
        SeededRun(
            RunId("run-ui-manual"), "manual__2026-11-23T07:00:00+00:00",
            second + timedelta(hours=5), "manual", "shadow", "success", patients[:2], {},
            _quality(2, {}, unmapped=1),
        ),
    ]  # fmt: skip
    return [_record(store, run, rng) for run in runs]
