"""Write one transaction's worth of RiskAssessments (a part), with its Provenance, despite races.

The part of :func:`~dipro_fhir.writeback.write.write_scores` that makes a write exactly once
against other writers: a part is read back first and identical content is skipped; a
conflict (another writer created the same id at the same time) is retried after a jittered
backoff (:func:`write_part`, :func:`put_unless_same`); references the server refuses are
rebuilt as logical references; the RiskAssessments written get one Provenance, and those
left without one are recorded as ``provenance-missing`` failures of their patients.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.core.scores import ModelInfo, PatientFailure, Score
from dipro_fhir.core.timeline import PatientId, ResourceRef
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.assessment import AssessmentOptions, to_provenance, to_risk_assessment
from dipro_fhir.writeback.sinks import EntryOutcome, ResultSink, same_content

_LOG = logging.getLogger(__name__)
PROVENANCE_MISSING = "provenance-missing"
CONFLICT_ATTEMPTS = 6
CONFLICT_DELAY_S = 0.2


@dataclass(frozen=True, slots=True)
class Context:
    """What every part of one write shares."""

    now: datetime
    stay_starts: Mapping[PatientId, datetime]
    fallback_options: AssessmentOptions
    identifier_fallback: bool

    def final(self) -> Context:
        """The same context with the identifier fallback spent (it is tried once)."""
        return replace(self, identifier_fallback=False)


@dataclass(slots=True)
class PartResult:
    """What writing one part did: the ids held, the counts, its patients' failures, and
    whether another writer raced it (``conflicted``: the part is tried again)."""

    ids: dict[tuple[PatientId, str], str] = field(default_factory=dict)
    written: int = 0
    unchanged: int = 0
    retracted: int = 0
    failures: list[PatientFailure] = field(default_factory=list)
    conflicted: bool = False


def write_part(
    sink: ResultSink,
    part: Sequence[tuple[list[Score], dict[str, Any]]],
    model: ModelInfo,
    options: AssessmentOptions,
    context: Context,
) -> PartResult:
    """Write one transaction's worth, again after a conflict (another writer raced us).

    A conflict (HTTP 409/412: HAPI-0550/0825 when two writers create one new id at once,
    HAPI-0989 on a stale version) is retried after a jittered backoff, re-reading first, so
    the second attempt finds the other writer's identical resources and writes nothing.
    """
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        result = _attempt_part(sink, part, model, options, context)
        if not result.conflicted or attempt == CONFLICT_ATTEMPTS:
            return result
        # 409/412: another writer (a concurrent run of the night), or HAPI's own race on a
        # new id or a stale version; the log does not guess which.
        _LOG.info("write-back: HTTP 409/412 conflict, attempt %d; re-reading and retrying", attempt)
        _backoff(attempt)
    raise AssertionError("unreachable")


def _attempt_part(
    sink: ResultSink,
    part: Sequence[tuple[list[Score], dict[str, Any]]],
    model: ModelInfo,
    options: AssessmentOptions,
    context: Context,
) -> PartResult:
    key = {r["id"]: (g[0].patient_id, g[0].task) for g, r in part}
    try:
        stored = sink.existing("RiskAssessment", list(key))
        retracted = {r["id"] for _, r in part if _is_retracted(stored.get(r["id"]))}
        same = [(g, r) for g, r in part if same_content(stored.get(r["id"]), r)]
        covered = sink.provenance_targets([_ref(r) for _, r in same])
    except DiproFhirError as exc:
        patients = sorted({g[0].patient_id for g, _ in part})
        detail = type(exc).__name__
        return PartResult(
            failures=[
                PatientFailure(p, "writeback", "source-unavailable", detail, True) for p in patients
            ]
        )
    held = [r["id"] for _, r in same] + sorted(retracted)
    result = PartResult(
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
        retry = _rebuild([(g, r) for g, r in to_send if _ref(r) in rejected], model, context)
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


def _write_provenance(
    sink: ResultSink,
    targets: Sequence[str],
    groups: Sequence[list[Score]],
    device_ref: str,
    options: AssessmentOptions,
    context: Context,
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
    outcome = put_unless_same(sink, provenance)
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


def put_unless_same(sink: ResultSink, resource: dict[str, Any]) -> EntryOutcome:
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
    part: Sequence[tuple[list[Score], dict[str, Any]]], model: ModelInfo, context: Context
) -> list[tuple[list[Score], dict[str, Any]]]:
    options = context.fallback_options
    return [
        (
            g,
            to_risk_assessment(
                g, options, stay_start=context.stay_starts.get(g[0].patient_id), model=model
            ),
        )
        for g, _ in part
    ]


def _is_retracted(stored: Mapping[str, Any] | None) -> bool:
    return stored is not None and stored.get("status") == "entered-in-error"


def _ref(resource: Mapping[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"
