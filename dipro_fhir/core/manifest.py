"""What travels between the steps of a run: the request, chunk manifests, scores as JSON.

Everything here is small and JSON-able, because Airflow passes it through XCom: a
:class:`RunRequest` (what to score), a :class:`ChunkManifest` per chunk (patients, staging
paths, failures, counts, timings, the chunk's data-quality counts, the problems of no
patient and the scored patients' input profile), and the JSON form of a :class:`Score` in
staging files.
Run ids are deterministic, so a re-run of a night converges on the same run.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from dipro_fhir.core.scores import PatientFailure, Score, failure_class
from dipro_fhir.core.timeline import NO_PATIENT, EncounterId, PatientId, ResourceRef, RunId

Cohort = Literal["active", "new_data"]
#: What started a run. Only a ``nightly`` run of the cohort moves the ``new_data`` watermark
#: and is the data-quality baseline of the next night; ``manual`` (a trigger, named
#: patients or a Group) and ``backfill`` runs are recorded apart.
RunKind = Literal["nightly", "manual", "backfill"]
RUN_KINDS: tuple[RunKind, ...] = ("nightly", "manual", "backfill")


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What to score: the as-of time and, optionally, an explicit cohort.

    Attributes:
        as_of: The scoring time (timezone-aware); nothing dated after it is used.
        dag_run_id: The scheduler's run id (or a CLI label).
        cohort: ``active`` (encounters under way at ``as_of``) or ``new_data`` (patients with
            data since the last successful run's watermark).
        patient_ids: Score exactly these patients (overrides ``cohort``).
        group_id: Score the members of this FHIR ``Group`` (overrides ``cohort``).
        dry_run: Extract and score, but write nothing to FHIR or the database.
        model_version: Refuse to run unless the checkpoint has this version.
        kind: What started the run (:data:`RunKind`); a run of named patients or a Group is
            never ``nightly`` (:attr:`run_kind`).
    """

    as_of: datetime
    dag_run_id: str
    cohort: Cohort = "active"
    patient_ids: tuple[str, ...] = ()
    group_id: str | None = None
    dry_run: bool = False
    model_version: str | None = None
    kind: RunKind = "nightly"

    @property
    def run_kind(self) -> RunKind:
        """The kind as recorded: ``nightly`` only for a run of the whole cohort."""
        if self.kind == "nightly" and (self.patient_ids or self.group_id):
            return "manual"
        return self.kind


@dataclass(frozen=True, slots=True)
class ChunkManifest:
    """One chunk of a run; travels through XCom as a dict (:meth:`to_xcom`)."""

    run_id: str
    index: int
    as_of: str
    patients: tuple[tuple[str, str | None], ...]
    dry_run: bool = False
    timelines_path: str | None = None
    scores_path: str | None = None
    failures: tuple[tuple[str, str, str, str, bool], ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)
    timings_s: Mapping[str, float] = field(default_factory=dict)
    quality: Mapping[str, Any] = field(default_factory=dict)
    orphan_issues: tuple[tuple[str, str, str], ...] = ()
    attempt: str = ""
    ndjson_dir: str | None = None  # a Bulk Data export of the run (extraction_mode bulk)
    kind: str = "nightly"  # RunKind of the run (:attr:`RunRequest.run_kind`)
    # The scored patients' inputs summarised (an InputProfile's JSON; the score stage's).
    profile: Mapping[str, Any] = field(default_factory=dict)

    def to_xcom(self) -> dict[str, Any]:
        """A JSON-able dict."""
        data = asdict(self)
        data["counts"], data["timings_s"] = dict(self.counts), dict(self.timings_s)
        data["quality"] = dict(self.quality)
        data["profile"] = dict(self.profile)
        return data

    @classmethod
    def from_xcom(cls, data: Mapping[str, Any]) -> ChunkManifest:
        """Read the dict written by :meth:`to_xcom` (lists become tuples)."""
        return cls(
            run_id=str(data["run_id"]),
            index=int(data["index"]),
            as_of=str(data["as_of"]),
            patients=tuple((str(p), None if e is None else str(e)) for p, e in data["patients"]),
            dry_run=bool(data.get("dry_run", False)),
            timelines_path=data.get("timelines_path"),
            scores_path=data.get("scores_path"),
            failures=tuple(tuple(f) for f in data.get("failures", ())),
            counts=dict(data.get("counts", {})),
            timings_s=dict(data.get("timings_s", {})),
            quality=dict(data.get("quality") or {}),
            orphan_issues=tuple(
                (str(c), str(r), str(d)) for c, r, d in data.get("orphan_issues", ())
            ),
            attempt=str(data.get("attempt", "")),
            ndjson_dir=data.get("ndjson_dir"),
            kind=str(data.get("kind", "nightly")),
            profile=dict(data.get("profile") or {}),
        )

    @property
    def as_of_time(self) -> datetime:
        """``as_of`` as an aware datetime."""
        return datetime.fromisoformat(self.as_of)

    def failure_records(self) -> list[PatientFailure]:
        """The failures recorded so far, as :class:`PatientFailure`."""
        return [PatientFailure(PatientId(p), s, r, d, t) for p, s, r, d, t in self.failures]


def as_of_for_logical_date(logical_date: datetime, tz: str = "UTC") -> datetime:
    """The as-of time of a scheduled run: its logical date, as an aware UTC time.

    A run depends only on its logical date, so a backfill of last week reproduces what the
    nightly run of that day would have seen (given the servers' ``lastUpdated`` stamps).
    """
    if logical_date.tzinfo is None:
        logical_date = logical_date.replace(tzinfo=ZoneInfo(tz))
    return logical_date.astimezone(UTC)


def run_id_for(request: RunRequest, model_version: str) -> RunId:
    """A deterministic run id: same night, cohort and model -> same run (re-runs converge)."""
    key = json.dumps(
        [
            request.as_of.astimezone(UTC).isoformat(),
            model_version,
            request.cohort,
            sorted(request.patient_ids),
            request.group_id,
        ]
    )
    return RunId("run-" + uuid.uuid5(uuid.NAMESPACE_URL, "dipro-fhir:" + key).hex[:16])


def summarise(chunks: Sequence[ChunkManifest]) -> dict[str, Any]:
    """Counts, failure reasons and per-stage timings over a run's chunks."""
    reasons: dict[str, int] = {}
    classes: dict[str, int] = {}
    failed: set[str] = set()
    unattributed = 0
    for chunk in chunks:
        for patient, _stage, reason, _detail, retriable in chunk.failures:
            reasons[reason] = reasons.get(reason, 0) + 1
            if patient == NO_PATIENT:  # problems of no patient (invalid ids) are no patient
                unattributed += 1
                continue
            if patient not in failed:
                kind = failure_class(reason, retriable)
                classes[kind] = classes.get(kind, 0) + 1
            failed.add(patient)
    totals: dict[str, int] = {}
    timings: dict[str, float] = {}
    for chunk in chunks:
        for key, value in chunk.counts.items():
            totals[key] = totals.get(key, 0) + int(value)
        for key, seconds in chunk.timings_s.items():
            timings[key] = round(timings.get(key, 0.0) + float(seconds), 3)
    return {
        "run_id": chunks[0].run_id if chunks else None,
        "as_of": chunks[0].as_of if chunks else None,
        "chunks": len(chunks),
        "patients": sum(len(c.patients) for c in chunks),
        "failed_patients": len(failed),
        "failure_reasons": reasons,
        "failure_classes": classes,
        "unattributed_failures": unattributed,
        **totals,
        "timings_s": timings,
    }


def score_to_json(score: Score) -> dict[str, Any]:
    return {
        "patient_id": score.patient_id,
        "encounter_id": score.encounter_id,
        "task": score.task,
        "outcome": score.outcome,
        "probability": score.probability,
        "model_name": score.model_name,
        "model_version": score.model_version,
        "as_of": score.as_of.isoformat(),
        "run_id": score.run_id,
        "basis": [[r.resource_type, r.id, r.version] for r in score.basis],
        "path": score.path,
        "missing_regions": list(score.missing_regions),
        "images_not_used": score.images_not_used,
        "films_left_out": list(score.films_left_out),
        "films_from_thorax": list(score.films_from_thorax),
    }


def score_from_json(data: Mapping[str, Any]) -> Score:
    return Score(
        patient_id=PatientId(data["patient_id"]),
        encounter_id=None if data["encounter_id"] is None else EncounterId(data["encounter_id"]),
        task=data["task"],
        outcome=data["outcome"],
        probability=float(data["probability"]),
        model_name=data["model_name"],
        model_version=data["model_version"],
        as_of=datetime.fromisoformat(data["as_of"]),
        run_id=RunId(data["run_id"]),
        basis=tuple(ResourceRef(t, i, v) for t, i, v in data["basis"]),
        path=data["path"],
        missing_regions=tuple(data.get("missing_regions", ())),
        images_not_used=int(data.get("images_not_used", 0)),
        films_left_out=tuple(str(f) for f in data.get("films_left_out", ())),
        films_from_thorax=tuple(str(f) for f in data.get("films_from_thorax", ())),
    )
