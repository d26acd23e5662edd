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
:class:`~dipro_fhir.scoring.score.PatientFailure` at stage ``writeback`` and the rest goes on.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    to_provenance,
    to_risk_assessment,
)
from dipro_fhir.writeback.sinks import EntryOutcome, ResultSink, same_content
from dipro_fhir.writeback.transparency import to_device, to_model_card

_LOG = logging.getLogger(__name__)
PROVENANCE_MISSING = "provenance-missing"
CONFLICT_ATTEMPTS = 6
CONFLICT_DELAY_S = 0.2


@dataclass(frozen=True, slots=True)
class _Context:
    """What every part of one write shares."""

    now: datetime
    stay_starts: Mapping[PatientId, datetime]
    fallback_options: AssessmentOptions
    identifier_fallback: bool

    def final(self) -> _Context:
        return replace(self, identifier_fallback=False)


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
    """Write the model card, then the Device that references it (card first: HAPI checks
    the reference)."""
    card = _put_unless_same(sink, to_model_card(model))
    if not card.ok:
        return card
    return _put_unless_same(sink, to_device(model))


def _build(
    groups: Sequence[list[Score]],
    options: AssessmentOptions,
    stay_starts: Mapping[PatientId, datetime],
) -> tuple[list[tuple[list[Score], dict[str, Any]]], list[PatientFailure]]:
    built: list[tuple[list[Score], dict[str, Any]]] = []
    failures: list[PatientFailure] = []
    for group in groups:
        patient = group[0].patient_id
        try:
            resource = to_risk_assessment(group, options, stay_start=stay_starts.get(patient))
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
    context = _Context(
        now=now or datetime.now(UTC),
        stay_starts=stay_starts or {},
        fallback_options=replace(opts, source_references="identifier"),
        identifier_fallback=opts.source_references == "literal" and opts.identifier_fallback,
    )
    ids: dict[tuple[PatientId, str], str] = {}
    written = unchanged = retracted = 0
    size = opts.transaction_size
    for start in range(0, len(built), size):
        part = _write_part(sink, built[start : start + size], model, opts, context)
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


@dataclass(slots=True)
class _PartResult:
    ids: dict[tuple[PatientId, str], str] = field(default_factory=dict)
    written: int = 0
    unchanged: int = 0
    retracted: int = 0
    failures: list[PatientFailure] = field(default_factory=list)
    conflicted: bool = False


def _write_part(
    sink: ResultSink,
    part: Sequence[tuple[list[Score], dict[str, Any]]],
    model: ModelInfo,
    options: AssessmentOptions,
    context: _Context,
) -> _PartResult:
    """Write one transaction's worth, again after a conflict (another writer raced us).

    A conflict (HTTP 409/412: HAPI-0550/0825 when two writers create one new id at once,
    HAPI-0989 on a stale version) is retried after a jittered backoff, re-reading first, so
    the second attempt finds the other writer's identical resources and writes nothing.
    """
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        result = _attempt_part(sink, part, model, options, context)
        if not result.conflicted or attempt == CONFLICT_ATTEMPTS:
            return result
        _LOG.info("write-back: conflict with another writer, attempt %d; retrying", attempt)
        _backoff(attempt)
    raise AssertionError("unreachable")


def _attempt_part(
    sink: ResultSink,
    part: Sequence[tuple[list[Score], dict[str, Any]]],
    model: ModelInfo,
    options: AssessmentOptions,
    context: _Context,
) -> _PartResult:
    key = {r["id"]: (g[0].patient_id, g[0].task) for g, r in part}
    try:
        stored = sink.existing("RiskAssessment", list(key))
        retracted = {r["id"] for _, r in part if _is_retracted(stored.get(r["id"]))}
        same = [(g, r) for g, r in part if same_content(stored.get(r["id"]), r)]
        covered = sink.provenance_targets([_ref(r) for _, r in same])
    except DiproFhirError as exc:
        patients = sorted({g[0].patient_id for g, _ in part})
        detail = type(exc).__name__
        return _PartResult(
            failures=[
                PatientFailure(p, "writeback", "source-unavailable", detail, True) for p in patients
            ]
        )
    held = [r["id"] for _, r in same] + sorted(retracted)
    result = _PartResult(
        ids={key[i]: i for i in held}, unchanged=len(same), retracted=len(retracted)
    )
    to_send = [(g, r) for g, r in part if key[r["id"]] not in result.ids]
    # Identical RiskAssessments that no Provenance targets (an earlier write lost it) get
    # one now: a Provenance is never lost for good.
    orphans = [(g, r) for g, r in same if _ref(r) not in covered]
    if not to_send and not orphans:
        return result
    device_ref = f"Device/{codes.device_id(model.name, model.version)}"
    outcomes = sink.write([r for _, r in to_send])
    written = {o.reference for o in outcomes if o.ok}
    result.written = len(written)
    result.conflicted = any(o.reason == "conflict" for o in outcomes)
    owners = {_ref(r): g[0].patient_id for g, r in to_send}
    for o in outcomes:
        if o.ok:
            rid = o.reference.split("/", 1)[1]
            result.ids[key[rid]] = rid
    rejected = {o.reference for o in outcomes if not o.ok and o.reason == "rejected"}
    if rejected and context.identifier_fallback:
        # The server refused literal references to source data it does not hold
        # (referential integrity on write): write those again with logical references.
        retry = _rebuild([(g, r) for g, r in to_send if _ref(r) in rejected], context)
        again = _attempt_part(sink, retry, model, context.fallback_options, context.final())
        result.ids.update(again.ids)
        result.written += again.written
        result.unchanged += again.unchanged
        result.failures += again.failures
        result.conflicted |= again.conflicted
        outcomes = [o for o in outcomes if o.reference not in rejected]
    result.failures += _failures(outcomes, owners)
    targets = sorted(written | {_ref(r) for _, r in orphans})
    if targets:
        groups = [g for g, r in [*to_send, *orphans] if _ref(r) in targets]
        result.failures += _write_provenance(sink, targets, groups, device_ref, options, context)
    return result


def _write_provenance(
    sink: ResultSink,
    targets: Sequence[str],
    groups: Sequence[list[Score]],
    device_ref: str,
    options: AssessmentOptions,
    context: _Context,
) -> list[PatientFailure]:
    """Write the Provenance of ``targets``; if it fails, their patients are ``partial``.

    HAPI checks the references it indexes for search (``Provenance.entity``, ``target``)
    but not ``RiskAssessment.basis``; so a source resource deleted since extraction fails
    the Provenance alone. It is then written once more with logical references.
    """
    sources: list[ResourceRef] = [ref for g in groups for s in g for ref in s.basis]
    provenance = to_provenance(
        groups[0][0].run_id, targets, device_ref, sources, context.now, options
    )
    outcome = _put_unless_same(sink, provenance)
    if outcome.ok:
        return []
    if outcome.reason == "rejected" and context.identifier_fallback:
        return _write_provenance(
            sink, targets, groups, device_ref, context.fallback_options, context.final()
        )
    _LOG.warning(
        "write-back partial: Provenance of %d RiskAssessments not written (%s)",
        len(targets),
        outcome.reason,
    )
    patients = sorted({g[0].patient_id for g in groups})
    detail = f"RiskAssessments written without their Provenance: {outcome.detail}"
    return [
        PatientFailure(p, "writeback", PROVENANCE_MISSING, detail, retriable=True) for p in patients
    ]


def _put_unless_same(sink: ResultSink, resource: dict[str, Any]) -> EntryOutcome:
    """PUT one resource unless the same content is there; look again after a conflict.

    Two writers build the same Device, and within a run the same Provenance id; the one
    that loses HAPI's race (409) finds the winner's copy on the next look and writes nothing.
    """
    reference = _ref(resource)
    rtype, rid = resource["resourceType"], resource["id"]
    outcome = EntryOutcome(reference, False, "conflict", "not attempted", True)
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            stored = sink.existing(rtype, [rid]).get(rid)
        except DiproFhirError as exc:
            return EntryOutcome(reference, False, "source-unavailable", type(exc).__name__, True)
        if same_content(stored, resource):
            return EntryOutcome(reference, True)
        outcome = sink.write([resource])[0]
        if outcome.reason != "conflict":
            return outcome
        _backoff(attempt)
    return outcome


def _backoff(attempt: int) -> None:
    time.sleep(CONFLICT_DELAY_S * attempt * (0.5 + random.random()))


def _rebuild(
    part: Sequence[tuple[list[Score], dict[str, Any]]], context: _Context
) -> list[tuple[list[Score], dict[str, Any]]]:
    options = context.fallback_options
    return [
        (g, to_risk_assessment(g, options, stay_start=context.stay_starts.get(g[0].patient_id)))
        for g, _ in part
    ]


def _is_retracted(stored: Mapping[str, Any] | None) -> bool:
    return stored is not None and stored.get("status") == "entered-in-error"


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


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
