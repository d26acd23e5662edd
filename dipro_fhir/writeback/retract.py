"""Retraction of a model version's results: RiskAssessments become ``entered-in-error``.

``dipro-fhir retract`` and the ``dipro_retract`` DAG call :func:`retract`. It finds the
version's RiskAssessments by search (``performer`` = the version's Device, ``date`` = the
as-of range, ``subject`` per patient when given), and for each chunk posts **one
transaction** holding

* a new version of each RiskAssessment with ``status`` ``entered-in-error``, a note giving
  the reason, and its narrative opening with "ENTERED IN ERROR" and that note (``PUT`` with
  ``ifMatch`` on the version read, so a concurrent writer makes the transaction fail and the
  chunk is read again), and
* one ``Provenance`` of the retraction: ``activity`` ``v3-DataOperation#NULLIFY``, the
  reason, the prior versions as entities (role ``revision``) and the Device.

A transaction is all or nothing, so a RiskAssessment is never ``entered-in-error`` without
its retraction Provenance. Then the chunk's score rows are marked retracted in one database
transaction (server first, database second: the write-back order). A re-run after a crash
(``kill -9`` anywhere) skips what is already ``entered-in-error``, marks its rows, and ends
with every covered row marked; nothing is written twice. Write-back never overwrites an
``entered-in-error`` RiskAssessment (:func:`dipro_fhir.writeback.write.write_scores`), so a
later night does not bring a retracted result back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dipro_fhir.core.errors import ConfigError, PublishConflict
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.store.retractions import RetractionRequest, RetractionStore
from dipro_fhir.writeback import codes
from dipro_fhir.writeback.narrative import mark_retracted

_LOG = logging.getLogger(__name__)
DATA_OPERATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
RETRACTED = "entered-in-error"
_SERVER_META = ("versionId", "lastUpdated", "source")
CONFLICT_ATTEMPTS = 5


@dataclass(slots=True)
class RetractionReport:
    """What a retraction did.

    Attributes:
        retraction_id: The retraction's stable id.
        found: RiskAssessments of the version in range on the server.
        retracted: Set to ``entered-in-error`` now.
        already: Found ``entered-in-error`` already (an earlier, interrupted run).
        rows_marked: Score rows marked retracted now.
        provenances: Retraction Provenances written now.
    """

    retraction_id: str
    found: int = 0
    retracted: int = 0
    already: int = 0
    rows_marked: int = 0
    provenances: int = 0

    def counts(self) -> dict[str, int]:
        """The counts as a JSON-able mapping."""
        return {
            "found": self.found,
            "retracted": self.retracted,
            "already": self.already,
            "rows_marked": self.rows_marked,
            "provenances": self.provenances,
        }


def search_params(request: RetractionRequest, device_ref: str) -> Iterator[dict[str, Any]]:
    """The searches that find the request's RiskAssessments (one per patient, if given)."""
    base: dict[str, Any] = {"performer": device_ref, "_count": "100"}
    dates = []
    if request.since is not None:
        dates.append("ge" + codes.utc_instant(request.since))
    if request.until is not None:
        dates.append("lt" + codes.utc_instant(request.until))
    if dates:
        base["date"] = dates
    if not request.patients:
        yield base
        return
    for patient in sorted(set(request.patients)):
        yield {**base, "subject": f"Patient/{patient}"}


def retracted_version(resource: dict[str, Any], reason: str, retraction_id: str) -> dict[str, Any]:
    """Return the ``entered-in-error`` version of a stored RiskAssessment."""
    new = {k: v for k, v in resource.items() if k != "meta"}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in _SERVER_META}
    if meta:
        new["meta"] = meta
    new["status"] = RETRACTED
    note = {"text": f"Retracted ({retraction_id}): {reason}"}
    new["note"] = [*(resource.get("note") or []), note]
    new["text"] = mark_retracted(resource.get("text"), note["text"])
    return new


def retraction_provenance(
    request: RetractionRequest,
    prior: Sequence[dict[str, Any]],
    device_ref: str,
    recorded: datetime,
) -> dict[str, Any]:
    """The Provenance of one chunk of a retraction (deterministic id from its targets)."""
    targets = sorted(f"RiskAssessment/{r['id']}" for r in prior)
    digest = hashlib.sha256("\x1f".join([request.retraction_id, *targets]).encode())
    return {
        "resourceType": "Provenance",
        "id": f"retr-{digest.hexdigest()[:40]}",
        "target": [{"reference": t} for t in targets],
        "recorded": codes.utc_instant(recorded),
        "activity": {
            "coding": [{"system": DATA_OPERATION_SYSTEM, "code": "NULLIFY", "display": "nullify"}],
            "text": f"retraction of model version {request.model_version}",
        },
        "reason": [{"text": request.reason}],
        "agent": [
            {
                "type": {"coding": [{"system": codes.PARTICIPANT_SYSTEM, "code": "author"}]},
                "who": {"display": "dipro-fhir retract"},
            }
        ],
        "entity": [
            {
                "role": "revision",
                "what": {
                    "reference": f"RiskAssessment/{r['id']}/_history/{r['meta']['versionId']}"
                },
            }
            for r in sorted(prior, key=lambda r: str(r["id"]))
        ]
        + [{"role": "source", "what": {"reference": device_ref}}],
    }


def retract(
    client: FhirClient,
    store: RetractionStore,
    request: RetractionRequest,
    *,
    chunk_size: int = 50,
    model_name: str | None = None,
) -> RetractionReport:
    """Retract a model version's RiskAssessments on the server and its rows in the store.

    Args:
        client: The FHIR server the results were written to.
        store: The results database.
        request: What to retract and why.
        chunk_size: RiskAssessments per transaction.
        model_name: The model's name when neither the request nor the store knows it.

    Raises:
        ConfigError: The model name cannot be told.
        DiproFhirError: The server failed (after retries); re-run to finish.
    """
    name = request.model_name or store.model_name(request.model_version) or model_name
    if not name:
        raise ConfigError(f"no model name known for version {request.model_version!r}")
    device_ref = f"Device/{codes.device_id(name, request.model_version)}"
    store.begin(request, name)
    report = RetractionReport(request.retraction_id)
    for params in search_params(request, device_ref):
        chunk: list[dict[str, Any]] = []
        for resource in client.search("RiskAssessment", params):
            chunk.append(resource)
            if len(chunk) >= chunk_size:
                _retract_chunk(client, store, request, chunk, device_ref, report)
                chunk = []
        if chunk:
            _retract_chunk(client, store, request, chunk, device_ref, report)
    report.rows_marked += store.mark_matching(request)
    store.finish(request, report.counts())
    _LOG.info("retraction %s: %s", request.retraction_id, report.counts())
    return report


def _retract_chunk(
    client: FhirClient,
    store: RetractionStore,
    request: RetractionRequest,
    chunk: list[dict[str, Any]],
    device_ref: str,
    report: RetractionReport,
) -> None:
    report.found += len(chunk)
    current = chunk
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        pending = [r for r in current if r.get("status") != RETRACTED]
        if not pending:
            break
        try:
            _post(client, request, pending, device_ref)
        except PublishConflict:
            if attempt == CONFLICT_ATTEMPTS:
                raise
            _LOG.info("retraction: a RiskAssessment changed meanwhile; reading again")
            current = [client.read("RiskAssessment", str(r["id"])) for r in current]
            continue
        report.retracted += len(pending)
        report.provenances += 1
        break
    report.already += len([r for r in chunk if r.get("status") == RETRACTED])
    report.rows_marked += store.mark(request, [str(r["id"]) for r in chunk])


def _post(
    client: FhirClient,
    request: RetractionRequest,
    pending: Sequence[dict[str, Any]],
    device_ref: str,
) -> None:
    provenance = retraction_provenance(request, pending, device_ref, datetime.now(UTC))
    entries = [
        {
            "resource": retracted_version(r, request.reason, request.retraction_id),
            "request": {
                "method": "PUT",
                "url": f"RiskAssessment/{r['id']}",
                "ifMatch": f'W/"{r["meta"]["versionId"]}"',
            },
        }
        for r in pending
    ]
    entries.append(
        {
            "resource": provenance,
            "request": {"method": "PUT", "url": f"Provenance/{provenance['id']}"},
        }
    )
    client.transaction(
        {"resourceType": "Bundle", "type": "transaction", "entry": entries}, idempotent=True
    )
