"""BALP-style AuditEvents: query redaction, patient entity, agents, write entities."""

from __future__ import annotations

import base64
import json

from dipro_fhir.fhir.exchange import Exchange
from dipro_fhir.fhir.resources import validate_resource
from dipro_fhir.run.audit import AuditRecorder, redact_query


def test_query_keeps_allowed_values_and_moves_the_patient_out() -> None:
    query, patients = redact_query(
        (
            ("subject", "Patient/p-77"),
            ("date", "le2026-06-10T02:00:00Z"),
            ("encounter", "Encounter/enc-p-77"),
            ("_id", "p-77"),
            ("_count", "200"),
        )
    )
    assert query == (
        "subject=[patient]&date=le2026-06-10T02:00:00Z"
        "&encounter=[redacted]&_id=[redacted]&_count=200"
    )
    assert patients == ["p-77"]


def test_events_carry_patients_only_in_the_patient_entity() -> None:
    recorder = AuditRecorder("job-1", "http://fhir/r4", ("dipro", "1.0.0"), "extract")
    recorder.observe(
        Exchange("GET", "Observation", (("patient", "p-77"), ("code", "8867-4")), None, 200)
    )
    recorder.observe(Exchange("GET", "Patient/p-77", (), None, 404))
    body = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "RiskAssessment",
                    "id": "ra-1",
                    "subject": {"reference": "Patient/p-77"},
                },
                "request": {"method": "PUT", "url": "RiskAssessment/ra-1"},
            }
        ],
    }
    recorder.observe(Exchange("POST", "", (), body, None))
    query, read, write = recorder.events
    for event in recorder.events:
        validate_resource(event)
        outside = [e for e in event.get("entity") or [] if e["role"]["code"] != "1"]
        text = json.dumps({**event, "entity": outside})
        decoded = [base64.b64decode(e["query"]).decode() for e in outside if "query" in e]
        assert "p-77" not in text + "".join(decoded)
    assert query["meta"]["profile"][0].endswith("IHE.BasicAudit.PatientQuery")
    assert [e["what"]["reference"] for e in query["entity"] if "what" in e] == ["Patient/p-77"]
    assert (read["action"], read["outcome"]) == ("R", "4")
    assert read["meta"]["profile"][0].endswith("IHE.BasicAudit.PatientRead")
    assert [e["what"]["reference"] for e in read["entity"] if "what" in e] == ["Patient/p-77"]
    assert (write["subtype"][0]["code"], write["action"], write["outcome"]) == (
        "transaction",
        "U",
        "8",
    )
    assert [e["what"]["reference"] for e in write["entity"]] == [
        "RiskAssessment/ra-1",
        "Patient/p-77",
    ]
    agents = [a["type"]["coding"][0]["code"] for a in write["agent"]]
    assert agents == ["110153", "110152", "110150"]
