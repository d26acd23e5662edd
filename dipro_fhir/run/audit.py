"""An audit trail of a run as FHIR ``AuditEvent``s in the style of IHE BALP.

IHE ITI Basic Audit Log Patterns (BALP, 1.1.x; ``https://profiles.ihe.net/ITI/BALP``):
every FHIR request a run makes becomes one ``AuditEvent``: ``type``
``audit-event-type#rest``, ``subtype`` the ``restful-interaction`` (``search-type``,
``read``, ``update``, ``transaction``, ``batch``), ``action`` (``E`` query, ``R`` read, ``U``
update), ``outcome`` (``0`` success, ``4`` refused, ``8`` no answer or server error), the
agents (the client, requestor, DICOM ``110153`` Source Role ID; the FHIR server, ``110152``
Destination Role ID; the model's ``Device``, DICOM ``110150`` Application) and entities:

* queries (profile ``IHE.BasicAudit.Query`` / ``PatientQuery``): a query entity (type ``2``
  System Object, role ``24`` Query) whose ``query`` is the base64 of ``METHOD Type?params``
  with **patient data taken out**: a patient parameter reads ``[patient]`` and the patient
  goes to the patient entity (type ``1`` Person, role ``1`` Patient; BALP's own place for
  it); the values of other identifying parameters (``_id``, ``identifier``, ``encounter``,
  ``subject`` of non-patients, ...) read ``[redacted]``. Only values of parameters on an
  allow-list (dates, codes, counts, status, the model's ``performer``) are kept;
* writes (``IHE.BasicAudit.Update`` / ``PatientUpdate``): one data entity (type ``2``, role
  ``4`` Domain Resource) per resource written, with its patient entity when it has one.

No free text carries patient data: no ``description``, ``name`` or ``detail`` values are
written from what the run read.

**Off by default** (``audit.enabled``): most hospital FHIR servers (HAPI with its audit
interceptor, Epic, Cerner, Azure) keep their own BALP-style audit log of every request they
serve, and a second copy written by the client doubles the load and the records. Turn it on
where the server does not audit (the sandbox does, to show the trail). Events are written
to the FHIR server the run reads (``PUT AuditEvent/<uuid>``, batches of 100) at the end of
each step; the audit writes themselves are not audited.
"""

from __future__ import annotations

import base64
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.exchange import Exchange, Observer
from dipro_fhir.writeback import codes

_LOG = logging.getLogger(__name__)
BALP: Final[str] = "https://profiles.ihe.net/ITI/BALP/StructureDefinition"
DCM: Final[str] = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE: Final[str] = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE: Final[str] = "http://terminology.hl7.org/CodeSystem/object-role"
INTERACTION: Final[str] = "http://hl7.org/fhir/restful-interaction"
CLIENT_SYSTEM: Final[str] = "https://dipro-fhir.dev/fhir/sid/client"
FLUSH_BATCH: Final[int] = 100
#: Parameters whose values never identify a patient and are kept as sent.
KEPT_VALUES: Final[frozenset[str]] = frozenset(
    {
        "date",
        "_lastUpdated",
        "_count",
        "_summary",
        "_elements",
        "_sort",
        "_total",
        "code",
        "category",
        "status",
        "class",
        "type",
        "performer",
        "method",
        "url",
        "_include",
        "_revinclude",
    }
)
PATIENT_PARAMS: Final[frozenset[str]] = frozenset({"subject", "patient"})


def _outcome(status: int | None) -> str:
    if status is not None and 200 <= status < 300:
        return "0"
    if status is not None and 400 <= status < 500:
        return "4"
    return "8"


def redact_query(params: tuple[tuple[str, str], ...]) -> tuple[str, list[str]]:
    """Return the query string with patient data taken out, and the patients it named.

    ``subject``/``patient`` values that are ``Patient/<id>`` (or a bare id) become
    ``[patient]`` (their ids are returned for the patient entity); other values become
    ``[redacted]`` unless the parameter is in :data:`KEPT_VALUES`.
    """
    parts: list[str] = []
    patients: list[str] = []
    for name, value in params:
        base = name.split(":", 1)[0]
        if base in PATIENT_PARAMS:
            for item in value.split(","):
                if item.startswith("Patient/") or "/" not in item:
                    patients.append(item.removeprefix("Patient/"))
            parts.append(f"{name}=[patient]")
        elif base in KEPT_VALUES:
            parts.append(f"{name}={value}")
        else:
            parts.append(f"{name}=[redacted]")
    return "&".join(parts), list(dict.fromkeys(patients))


def _patient_entity(patient_id: str) -> dict[str, Any]:
    return {
        "what": {"reference": f"Patient/{patient_id}"},
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }


def _data_entity(reference: str) -> dict[str, Any]:
    return {
        "what": {"reference": reference},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
    }


def _written(body: Mapping[str, Any] | None, path: str) -> list[tuple[str, str | None]]:
    """``(Type/id, patient id or None)`` of each resource a request wrote."""
    if not body:
        return []
    found: list[tuple[str, str | None]] = []
    if body.get("resourceType") == "Bundle":
        entries = body.get("entry") or []
        resources = [e["resource"] for e in entries if isinstance(e.get("resource"), dict)]
        # A batch of reads: the references read (``Type/id``; our ids carry no patient data).
        found += [
            (str(e["request"]["url"]), None)
            for e in entries
            if "resource" not in e and str((e.get("request") or {}).get("url", "")).count("/") == 1
        ]
    else:
        resources = [body]
    for resource in resources:
        if not resource.get("id"):
            continue
        subject = (resource.get("subject") or {}).get("reference", "")
        patient = subject.removeprefix("Patient/") if subject.startswith("Patient/") else None
        found.append((f"{resource.get('resourceType')}/{resource['id']}", patient))
    return found


class AuditRecorder:
    """Collects one BALP-style AuditEvent per FHIR request; :meth:`flush` writes them.

    Args:
        client_id: The client's id (the SMART client id, or ``dipro-fhir``).
        server_base: The FHIR server's base URL (the destination agent).
        model: The model's name and version (its ``Device``), or ``None``.
        activity: What the requests served (``extract``, ``writeback``, ``plan``).
    """

    def __init__(
        self, client_id: str, server_base: str, model: tuple[str, str] | None, activity: str
    ) -> None:
        self.client_id = client_id
        self.server_base = server_base
        self.model = model
        self.activity = activity
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def observe(self, exchange: Exchange) -> None:
        """Record one request (the client's observer hook)."""
        event = self._event(exchange)
        with self._lock:
            self.events.append(event)

    def _event(self, exchange: Exchange) -> dict[str, Any]:
        method, path = exchange.method, exchange.path
        kind = path.split("?", 1)[0].rsplit("/", 1)[-1] if "://" in path else path
        entities: list[dict[str, Any]] = []
        patients: list[str] = []
        if method == "GET":
            if "://" in path:  # a next page: opaque to us, its query already recorded
                text, action, subtype = "GET [next page]", "E", "search-type"
            elif "/" in path:
                rtype, rid = path.split("/", 1)
                text, action, subtype = f"GET {rtype}/[redacted]", "R", "read"
                if rtype == "Patient":  # BALP PatientRead: the patient in its own entity
                    patients.append(rid)
            else:
                query, patients = redact_query(exchange.params)
                text, action, subtype = f"GET {kind}?{query}", "E", "search-type"
            entities.append(
                {
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                    "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                    "query": base64.b64encode(text.encode()).decode("ascii"),
                }
            )
        else:
            bundle_type = (exchange.body or {}).get("type") if not path else None
            subtype = str(bundle_type) if bundle_type in ("transaction", "batch") else "update"
            action = "E" if subtype == "batch" else "U"
            for reference, patient in _written(exchange.body, path):
                entities.append(_data_entity(reference))
                if patient:
                    patients.append(patient)
        entities += [_patient_entity(p) for p in dict.fromkeys(patients)]
        name = (
            "Query" if action == "E" and method == "GET" else "Read" if action == "R" else "Update"
        )
        profile = f"{BALP}/IHE.BasicAudit.{'Patient' if patients else ''}{name}"
        event: dict[str, Any] = {
            "resourceType": "AuditEvent",
            "id": str(uuid.uuid4()),
            "meta": {"profile": [profile]},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": "rest",
                "display": "Restful Operation",
            },
            "subtype": [{"system": INTERACTION, "code": subtype}],
            "action": action,
            "recorded": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "outcome": _outcome(exchange.status),
            "purposeOfEvent": [{"text": f"dipro-fhir {self.activity}"}],
            "agent": self._agents(),
            "source": {
                "site": "dipro-fhir",
                "observer": {"display": "dipro-fhir"},
                "type": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                        "code": "4",
                        "display": "Application Server",
                    }
                ],
            },
        }
        if entities:
            event["entity"] = entities
        return event

    def _agents(self) -> list[dict[str, Any]]:
        agents: list[dict[str, Any]] = [
            {
                "type": {
                    "coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]
                },
                "who": {
                    "identifier": {"system": CLIENT_SYSTEM, "value": self.client_id},
                    "display": "dipro-fhir",
                },
                "requestor": True,
            },
            {
                "type": {
                    "coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]
                },
                "who": {"display": "FHIR server"},
                "requestor": False,
                "network": {"address": self.server_base, "type": "5"},
            },
        ]
        if self.model:
            agents.append(
                {
                    "type": {
                        "coding": [{"system": DCM, "code": "110150", "display": "Application"}]
                    },
                    # By identifier: a step before write-back (plan, extract) audits before
                    # the Device exists, and servers that check references would refuse.
                    "who": {
                        "type": "Device",
                        "identifier": {
                            "system": codes.MODEL_ID_SYSTEM,
                            "value": f"{self.model[0]}|{self.model[1]}",
                        },
                        "display": f"Device/{codes.device_id(*self.model)}",
                    },
                    "requestor": False,
                }
            )
        return agents

    def flush(self, client: FhirClient) -> int:
        """Write the collected events (batches of PUTs); return how many were written.

        Audit writes must not fail the run: a failure is logged (counts only) and the
        events are kept for the next flush.
        """
        with self._lock:
            pending, self.events = self.events, []
        written = 0
        for start in range(0, len(pending), FLUSH_BATCH):
            part = pending[start : start + FLUSH_BATCH]
            bundle = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [
                    {"resource": e, "request": {"method": "PUT", "url": f"AuditEvent/{e['id']}"}}
                    for e in part
                ],
            }
            try:
                response = client.batch(bundle, idempotent=True)
            except DiproFhirError as exc:
                _LOG.warning(
                    "audit: %d AuditEvents not written (%s)", len(part), type(exc).__name__
                )
                with self._lock:
                    self.events = part + pending[start + FLUSH_BATCH :] + self.events
                return written
            entries = response.get("entry") or []
            statuses = [str((e.get("response") or {}).get("status", "")) for e in entries]
            refused = Counter(s[:3] for s in statuses if not s.startswith("2"))
            if refused:  # status codes only: the outcomes may quote what was sent
                _LOG.warning("audit: AuditEvents refused by the server: %s", dict(refused))
            written += len(statuses) - sum(refused.values())
        return written


def observers(recorder: AuditRecorder | None) -> tuple[Observer, ...]:
    """The client observers of a recorder (none when auditing is off)."""
    return () if recorder is None else (recorder.observe,)


@contextmanager
def recording(
    settings: Any, activity: str, model: tuple[str, str] | None
) -> Iterator[AuditRecorder | None]:
    """Record a step's FHIR requests when ``settings.audit.enabled``; write them at the end.

    Yields the recorder (add ``recorder.observe`` to the step's clients) or ``None`` when
    auditing is off or there is no FHIR server.
    """
    if not settings.audit.enabled or not settings.fhir.base_url:
        yield None
        return
    from dipro_fhir.run import connections

    client_id = settings.fhir.smart_client_id or "dipro-fhir"
    recorder = AuditRecorder(client_id, settings.fhir.base_url, model, activity)
    try:
        yield recorder
    finally:
        with connections.fhir_client(settings.fhir) as client:
            written = recorder.flush(client)
        _LOG.info("audit: %d AuditEvents written for %s", written, activity)
