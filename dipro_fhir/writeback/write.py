"""Write scores back: RiskAssessments (with their Device and Provenance) to a sink, exactly once.

Exactly once without races (DESIGN.md "Runs are idempotent"):

* every resource has a deterministic client-assigned id (:mod:`~dipro_fhir.writeback.codes`),
  written with ``PUT Type/id``, so two writers of the same night land on the same resources;
* before writing, the existing resources are read back and identical content is skipped
  (a re-``PUT`` of identical content would still bump ``meta.versionId`` on most servers),
  so a re-run of the same night writes nothing; two runs racing may both write a resource,
  which gives it a second, identical version and never a duplicate;
* a new model version gives new ids (the version is part of every id), so old resources are
  never edited;
* a ``Provenance`` is written with (in the same transaction as) the RiskAssessments that
  changed, and none when nothing changed.

One failing entry fails only its patient: it is reported as a
:class:`~dipro_fhir.scoring.score.PatientFailure` at stage ``writeback`` and the rest goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from dipro_fhir.errors import DiproFhirError, InvalidResource
from dipro_fhir.scoring.score import ModelInfo, PatientFailure, Score
from dipro_fhir.store.results import ChunkCounts, ResultStore
from dipro_fhir.timeline import MappingIssue, PatientId, ResourceRef, RunId
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.assessment import (
    AssessmentOptions,
    check_risk_assessment,
    to_device,
    to_provenance,
    to_risk_assessment,
)
from dipro_fhir.writeback.sinks import EntryOutcome, ResultSink

_LOG = logging.getLogger(__name__)
_SERVER_META = ("versionId", "lastUpdated", "source", "author", "project", "compartment")


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What a write did.

    Attributes:
        resource_ids: The RiskAssessment id per ``(patient_id, task)`` now held by the sink
            (written now or already identical there).
        failures: One failure per patient and reason that could not be written.
        written: RiskAssessments written now.
        unchanged: RiskAssessments skipped because identical content was already there.
    """

    resource_ids: Mapping[tuple[PatientId, str], str] = field(default_factory=dict)
    failures: tuple[PatientFailure, ...] = ()
    written: int = 0
    unchanged: int = 0

    def ids_for(self, patient_id: PatientId) -> tuple[str, ...]:
        """Return the RiskAssessment ids held for one patient."""
        return tuple(v for (p, _), v in sorted(self.resource_ids.items()) if p == patient_id)


def same_content(stored: Mapping[str, Any] | None, ours: Mapping[str, Any]) -> bool:
    """Whether ``stored`` already says what ``ours`` says (server-set ``meta`` ignored)."""
    if stored is None:
        return False
    meta = {k: v for k, v in (stored.get("meta") or {}).items() if k not in _SERVER_META}
    theirs = {k: v for k, v in stored.items() if k != "meta"}
    if meta:
        theirs["meta"] = meta
    mine = dict(ours)
    if ours["resourceType"] == "Provenance":  # ``recorded`` is the time of writing
        theirs.pop("recorded", None)
        mine.pop("recorded", None)
    return theirs == mine


def _group(scores: Sequence[Score]) -> list[list[Score]]:
    def key(s: Score) -> tuple[str, str, str, str]:
        return (s.patient_id, s.task, s.model_version, codes.utc_instant(s.as_of))

    return [list(g) for _, g in groupby(sorted(scores, key=key), key=key)]


def _failures(
    outcomes: Sequence[EntryOutcome], owners: Mapping[str, PatientId]
) -> list[PatientFailure]:
    failed: dict[tuple[PatientId, str], PatientFailure] = {}
    for o in outcomes:
        if not o.ok and o.reference in owners:
            patient = owners[o.reference]
            failed.setdefault(
                (patient, o.reason),
                PatientFailure(patient, "writeback", o.reason, o.detail, o.retriable),
            )
    return list(failed.values())


def _ensure_device(sink: ResultSink, model: ModelInfo) -> EntryOutcome:
    device = to_device(model)
    if same_content(sink.existing("Device", [device["id"]]).get(device["id"]), device):
        return EntryOutcome(f"Device/{device['id']}", True)
    return sink.write([device])[0]


def _build(
    groups: Sequence[list[Score]],
    options: AssessmentOptions,
    stay_starts: Mapping[PatientId, datetime],
) -> tuple[list[tuple[list[Score], dict[str, Any]]], list[PatientFailure]]:
    built: list[tuple[list[Score], dict[str, Any]]] = []
    failures: list[PatientFailure] = []
    for group in groups:
        patient = group[0].patient_id
        resource = to_risk_assessment(group, options, stay_start=stay_starts.get(patient))
        try:
            check_risk_assessment(resource, options.probability_scale)
        except InvalidResource as exc:
            failures.append(PatientFailure(patient, "writeback", "invalid-resource", str(exc)))
            continue
        built.append((group, resource))
    return built, failures


def write_scores(
    sink: ResultSink,
    scores: Sequence[Score],
    model: ModelInfo,
    options: AssessmentOptions | None = None,
    *,
    stay_starts: Mapping[PatientId, datetime] | None = None,
    now: datetime | None = None,
) -> WriteReport:
    """Write the RiskAssessments of ``scores`` (plus Device and Provenance) to ``sink``.

    Args:
        sink: Where to write.
        scores: Scores of any number of patients and tasks of one run.
        model: The model that produced them (its ``Device``).
        options: Scale, thresholds, basis bound and transaction size.
        stay_starts: Encounter start per patient (length-of-stay ``whenPeriod``).
        now: ``Provenance.recorded``; the current time by default.

    Returns:
        Ids held per patient and task, and one failure per patient that could not be written.

    Raises:
        AuthError: The server refused the credentials (stop the run).
    """
    opts = options or AssessmentOptions()
    built, failures = _build(_group(scores), opts, stay_starts or {})
    device = _ensure_device(sink, model)
    if not device.ok:
        failed = {s.patient_id for s in scores}
        failures += [
            PatientFailure(
                p, "writeback", f"device-{device.reason}", device.detail, device.retriable
            )
            for p in sorted(failed)
        ]
        return WriteReport(failures=tuple(failures))
    ids: dict[tuple[PatientId, str], str] = {}
    written = unchanged = 0
    size = opts.transaction_size
    for start in range(0, len(built), size):
        part = built[start : start + size]
        done, n_written, n_unchanged, part_failures = _write_part(
            sink, part, model, opts, now or datetime.now(UTC)
        )
        ids.update(done)
        written, unchanged = written + n_written, unchanged + n_unchanged
        failures += part_failures
    _LOG.info(
        "write-back: %d RiskAssessments written, %d unchanged, %d patients failed",
        written,
        unchanged,
        len({f.patient_id for f in failures}),
    )
    return WriteReport(ids, tuple(failures), written, unchanged)


def _write_part(
    sink: ResultSink,
    part: Sequence[tuple[list[Score], dict[str, Any]]],
    model: ModelInfo,
    options: AssessmentOptions,
    now: datetime,
) -> tuple[dict[tuple[PatientId, str], str], int, int, list[PatientFailure]]:
    try:
        stored = sink.existing("RiskAssessment", [r["id"] for _, r in part])
    except DiproFhirError as exc:
        outcome = EntryOutcome("", False, "source-unavailable", type(exc).__name__, True)
        patients = sorted({g[0].patient_id for g, _ in part})
        return (
            {},
            0,
            0,
            [
                PatientFailure(p, "writeback", outcome.reason, outcome.detail, True)
                for p in patients
            ],
        )
    key = {r["id"]: (g[0].patient_id, g[0].task) for g, r in part}
    ids = {key[r["id"]]: r["id"] for _, r in part if same_content(stored.get(r["id"]), r)}
    to_send = [(g, r) for g, r in part if key[r["id"]] not in ids]
    if not to_send:
        return ids, 0, len(part), []
    targets = [f"RiskAssessment/{r['id']}" for _, r in to_send]
    sources: list[ResourceRef] = [ref for g, _ in to_send for s in g for ref in s.basis]
    device_ref = f"Device/{codes.device_id(model.name, model.version)}"
    provenance = to_provenance(
        to_send[0][0][0].run_id, targets, device_ref, sources, now, options.max_basis
    )
    outcomes = sink.write([r for _, r in to_send] + [provenance])
    owners = {f"RiskAssessment/{r['id']}": g[0].patient_id for g, r in to_send}
    ok = [o for o in outcomes[:-1] if o.ok]
    for o in ok:
        rid = o.reference.split("/", 1)[1]
        ids[key[rid]] = rid
    if not outcomes[-1].ok:
        _LOG.warning(
            "Provenance of %d RiskAssessments not written: %s", len(ok), outcomes[-1].reason
        )
    elif len(ok) < len(to_send):
        # Entries were written one by one and some failed: the Provenance (same id) must
        # target only what exists (Provenance.target, R4 6.3).
        provenance["target"] = [{"reference": o.reference} for o in ok]
        sink.write([provenance] if ok else [])
    return ids, len(ok), len(part) - len(to_send), _failures(outcomes, owners)


def publish_chunk(
    sink: ResultSink | None,
    store: ResultStore,
    run_id: RunId,
    scores: Sequence[Score],
    model: ModelInfo,
    *,
    failures: Sequence[PatientFailure] = (),
    issues: Mapping[PatientId, Sequence[MappingIssue]] | None = None,
    options: AssessmentOptions | None = None,
    stay_starts: Mapping[PatientId, datetime] | None = None,
) -> tuple[WriteReport, ChunkCounts]:
    """Write one chunk to the sink first, then record it (with the FHIR ids) in the store.

    The order makes a crash between the two harmless: the re-run finds the RiskAssessments
    already there (nothing written) and fills in the missing database rows. Scores of a
    patient whose write-back failed are still stored (without a FHIR id), next to the
    failure; a later run fills in the id.
    """
    report = (
        write_scores(sink, scores, model, options, stay_starts=stay_starts)
        if sink
        else WriteReport()
    )
    counts = store.record_chunk(
        run_id,
        scores,
        [*failures, *report.failures],
        issues,
        report.resource_ids,
    )
    return report, counts
