"""Write scores back: RiskAssessments (with their Device and Provenance) to a sink, exactly once.

Exactly once without races (DESIGN.md "Runs are idempotent"):

* every resource has a deterministic client-assigned id (:mod:`~dipro_fhir.writeback.codes`),
  written with ``PUT Type/id``, so two writers of the same night land on the same resources;
* before writing, the existing resources are read back and identical content is skipped,
  so a re-run of the same night writes nothing. Servers differ on an identical re-``PUT``:
  HAPI FHIR stores no new version (``suppressUpdatesWithNoChange``, its default), others
  (Medplum) do; skipping makes both behave the same;
* two runs racing on one new id get a conflict from servers that serialise creates (HAPI:
  409, HAPI-0550/0825); the losing part is re-read and retried after a backoff, and then
  finds the other run's identical resources;
* a new model version gives new ids (the version is part of every id), so old resources are
  never edited;
* the RiskAssessments of a transaction that changed get one ``Provenance`` (written right
  after them). A RiskAssessment that no Provenance targets (a crash or a refused write in
  between) gets one on the next run. While it has none, its patient is recorded as failed
  with reason ``provenance-missing`` (a partial write-back), never only logged.

One failing entry fails only its patient: it is reported as a
:class:`~dipro_fhir.core.scores.PatientFailure` at stage ``writeback`` and the rest goes on.

This module groups and builds the RiskAssessments and writes the Device; each transaction's
worth (a part), with its conflicts, retries and Provenance, is
:mod:`~dipro_fhir.writeback.parts`'s job.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import groupby
from typing import Any

from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.core.scores import ModelInfo, PatientFailure, Score
from dipro_fhir.core.timeline import MappingIssue, PatientId, RunId
from dipro_fhir.store.results import ChunkCounts, ResultStore
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.assessment import (
    AssessmentOptions,
    check_risk_assessment,
    to_risk_assessment,
)
from dipro_fhir.writeback.parts import Context, put_unless_same, write_part
from dipro_fhir.writeback.sinks import EntryOutcome, ResultSink
from dipro_fhir.writeback.transparency import to_device, to_model_card

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WriteReport:
    """What a write did.

    Attributes:
        resource_ids: The RiskAssessment id per ``(patient_id, task)`` now held by the sink
            (written now or already identical there).
        failures: One failure per patient and reason that could not be written.
        written: RiskAssessments written now.
        unchanged: RiskAssessments skipped because identical content was already there.
        retracted: RiskAssessments skipped because they were retracted
            (``entered-in-error``): a later run never brings a retracted result back.
    """

    resource_ids: Mapping[tuple[PatientId, str], str] = field(default_factory=dict)
    failures: tuple[PatientFailure, ...] = ()
    written: int = 0
    unchanged: int = 0
    retracted: int = 0

    def ids_for(self, patient_id: PatientId) -> tuple[str, ...]:
        """Return the RiskAssessment ids held for one patient."""
        return tuple(v for (p, _), v in sorted(self.resource_ids.items()) if p == patient_id)


def _group(scores: Sequence[Score]) -> list[list[Score]]:
    def key(s: Score) -> tuple[str, str, str, str]:
        return (s.patient_id, s.task, s.model_version, codes.utc_instant(s.as_of))

    return [list(g) for _, g in groupby(sorted(scores, key=key), key=key)]


def _ensure_device(sink: ResultSink, model: ModelInfo) -> EntryOutcome:
    """Write the model card, then the Device that references it (card first: HAPI checks
    the reference)."""
    card = put_unless_same(sink, to_model_card(model))
    if not card.ok:
        return card
    return put_unless_same(sink, to_device(model))


def _build(
    groups: Sequence[list[Score]],
    options: AssessmentOptions,
    stay_starts: Mapping[PatientId, datetime],
    model: ModelInfo,
) -> tuple[list[tuple[list[Score], dict[str, Any]]], list[PatientFailure]]:
    built: list[tuple[list[Score], dict[str, Any]]] = []
    failures: list[PatientFailure] = []
    for group in groups:
        patient = group[0].patient_id
        try:
            resource = to_risk_assessment(
                group, options, stay_start=stay_starts.get(patient), model=model
            )
            check_risk_assessment(resource, options.probability_scale)
        except InvalidResource as exc:
            failures.append(PatientFailure(patient, "writeback", "invalid-resource", str(exc)))
            continue
        except Exception as exc:  # the patient boundary: one patient fails
            detail = type(exc).__name__
            failures.append(PatientFailure(patient, "writeback", "internal-error", detail))
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
    before_part: Callable[[], None] | None = None,
) -> WriteReport:
    """Write the RiskAssessments of ``scores`` (plus Device and Provenance) to ``sink``.

    Args:
        sink: Where to write.
        scores: Scores of any number of patients and tasks of one run.
        model: The model that produced them (its ``Device``).
        options: Scale, thresholds, basis bound and transaction size.
        stay_starts: Encounter start per patient (length-of-stay ``whenPeriod``).
        now: ``Provenance.recorded``; the current time by default.
        before_part: Called before each transaction (the night lock's check: it stops the
            write-back by raising when the lock cannot be held).

    Returns:
        Ids held per patient and task, and one failure per patient that could not be written.

    Raises:
        AuthError: The server refused the credentials (stop the run).
    """
    opts = options or AssessmentOptions()
    built, failures = _build(_group(scores), opts, stay_starts or {}, model)
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
    context = Context(
        now=now or datetime.now(UTC),
        stay_starts=stay_starts or {},
        fallback_options=replace(opts, source_references="identifier"),
        identifier_fallback=opts.source_references == "literal" and opts.identifier_fallback,
    )
    ids: dict[tuple[PatientId, str], str] = {}
    written = unchanged = retracted = 0
    size = opts.transaction_size
    for start in range(0, len(built), size):
        if before_part is not None:
            before_part()
        part = write_part(sink, built[start : start + size], model, opts, context)
        ids.update(part.ids)
        written, unchanged = written + part.written, unchanged + part.unchanged
        retracted += part.retracted
        failures += part.failures
    _LOG.info(
        "write-back: %d RiskAssessments written, %d unchanged, %d retracted kept, "
        "%d patients failed",
        written,
        unchanged,
        retracted,
        len({f.patient_id for f in failures}),
    )
    return WriteReport(ids, tuple(failures), written, unchanged, retracted)


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
    before_part: Callable[[], None] | None = None,
) -> tuple[WriteReport, ChunkCounts]:
    """Write one chunk to the sink first, then record it (with the FHIR ids) in the store.

    The order makes a crash between the two harmless: the re-run finds the RiskAssessments
    already there (nothing written) and fills in the missing database rows. Scores of a
    patient whose write-back failed for a passing reason (retriable) are still stored
    (without a FHIR id), next to the failure; a later run fills in the id. A score whose
    RiskAssessment the server refused for good is not stored: the failure row says why, and
    the database holds no score that was never delivered.
    """
    report = (
        write_scores(sink, scores, model, options, stay_starts=stay_starts, before_part=before_part)
        if sink
        else WriteReport()
    )
    if sink is not None:
        refused = {
            f.patient_id for f in report.failures if f.stage == "writeback" and not f.retriable
        }
        scores = [
            s
            for s in scores
            if s.patient_id not in refused or (s.patient_id, s.task) in report.resource_ids
        ]
    counts = store.record_chunk(
        run_id,
        scores,
        [*failures, *report.failures],
        issues,
        report.resource_ids,
    )
    return report, counts
