"""With ``audit.enabled`` a night (plan, extract, score, write back against HAPI, Orthanc and
PostgreSQL) leaves BALP-style AuditEvents on HAPI, with patients only in the patient entity."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from dipro_fhir.core.settings import (
    AuditSettings,
    DicomWebSettings,
    FhirSettings,
    ModelSettings,
    RunSettings,
    Settings,
    StoreSettings,
    WriteBackSettings,
)
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.resources import validate_resource
from dipro_fhir.run.pipeline import RunRequest, run_locally
from tests.checkpoints import write_tiny_checkpoint
from tests.integration.writeback.validate import server_errors
from tests.servers.orthanc import OrthancServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
AS_OF = datetime(2026, 6, 10, 2, tzinfo=UTC)
N_PATIENTS = 3
PATIENT_ROLE = "1"


def _settings(base_url: str, orthanc: OrthancServer, pg_url: str, tmp_path: Path) -> Settings:
    write_tiny_checkpoint(tmp_path / "checkpoint", name="dipro-audit", version="0.0.1")
    return Settings(
        fhir=FhirSettings(base_url=base_url),
        dicomweb=DicomWebSettings(base_url=orthanc.dicomweb_url),
        store=StoreSettings(url=SecretStr(pg_url)),
        model=ModelSettings(checkpoint=tmp_path / "checkpoint", device="cpu"),
        writeback=WriteBackSettings(target="fhir"),
        run=RunSettings(staging_dir=str(tmp_path / "staging"), availability="issued"),
        audit=AuditSettings(enabled=True),
    )


def _patient_data(client: FhirClient) -> set[str]:
    """Every patient id, name part and birth date on the server."""
    found: set[str] = set()
    for patient in client.search("Patient", {"_count": "500"}):
        found.add(patient["id"])
        found.update(p for n in patient.get("name") or [] for p in n.get("given") or [])
        found.update(n["family"] for n in patient.get("name") or [] if n.get("family"))
        if patient.get("birthDate"):
            found.add(patient["birthDate"])
    return found


def _outside_patient_field(event: dict[str, Any]) -> str:
    """The event as text, patient entities left out and queries decoded."""
    copy = json.loads(json.dumps(event))
    kept = []
    for entity in copy.get("entity") or []:
        if (entity.get("role") or {}).get("code") == PATIENT_ROLE:
            continue
        if "query" in entity:
            entity["query"] = base64.b64decode(entity["query"]).decode()
        kept.append(entity)
    copy["entity"] = kept
    return json.dumps(copy)


def test_a_night_with_audit_on_leaves_auditevents_without_patient_data(
    fhir_base_url: str, orthanc: OrthancServer, migrated_pg_url: str, tmp_path: Path
) -> None:
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import load_into_servers

    orthanc.reset()
    cohort = list(
        generate_cohort(
            N_PATIENTS,
            seed=5,
            start=AS_OF - timedelta(days=4),
            admission_span_days=3.5,
            reference_time=AS_OF,
            id_prefix="aud",
        )
    )
    with FhirClient(fhir_base_url) as client:
        load_into_servers(cohort, client, orthanc.dicomweb_url, image_size=(128, 128))
    settings = _settings(fhir_base_url, orthanc, migrated_pg_url, tmp_path)
    request = RunRequest(
        as_of=AS_OF, dag_run_id="audit-night", patient_ids=tuple(p.patient_id for p in cohort)
    )
    summary = run_locally(settings, request)
    with FhirClient(fhir_base_url) as client:
        events = list(client.search("AuditEvent", {"_count": "1000"}))
        patient_data = _patient_data(client)
        written = {
            rtype: list(client.search(rtype, {"_count": "500"}))
            for rtype in ("Device", "DocumentReference", "RiskAssessment", "Provenance")
        }
    # The night's AI-transparency resources validate (fhir.resources and HAPI $validate).
    assert [len(written[t]) for t in ("Device", "DocumentReference")] == [1, 1]
    assert len(written["RiskAssessment"]) == 3 * N_PATIENTS
    for provenance in written["Provenance"]:
        assert provenance["reason"][0]["coding"][0]["code"] == "AIAST"
        roles = [a["role"][0]["coding"][0]["code"] for a in provenance["agent"] if a.get("role")]
        assert roles == ["Artificial-Intelligence"]
    invalid: dict[str, list[str]] = {}
    for resources in written.values():
        for resource in resources:
            validate_resource(resource)
            errors = server_errors(fhir_base_url, resource)
            if errors:
                invalid[f"{resource['resourceType']}/{resource['id']}"] = errors
    assert invalid == {}
    assert summary["status"] in ("success", "partial")
    assert events, "no AuditEvents on the server"
    leaks = {
        e["id"]: sorted(d for d in patient_data if d in _outside_patient_field(e)) for e in events
    }
    assert {k: v for k, v in leaks.items() if v} == {}
    subtypes = Counter(e["subtype"][0]["code"] for e in events)
    assert subtypes["search-type"] > 0, subtypes
    assert subtypes["transaction"] + subtypes["update"] > 0, subtypes
    in_patient_field = {
        entity["what"]["reference"]
        for e in events
        for entity in e.get("entity") or []
        if (entity.get("role") or {}).get("code") == PATIENT_ROLE
    }
    assert in_patient_field == {f"Patient/{p.patient_id}" for p in cohort}
    for event in events:
        validate_resource(event)
        agents = {a["type"]["coding"][0]["code"]: a for a in event["agent"]}
        assert agents["110153"]["requestor"] is True
        assert agents["110150"]["who"]["display"].startswith("Device/model-")
    sample = next(
        e
        for e in events
        if e["subtype"][0]["code"] == "search-type"
        and any((x.get("role") or {}).get("code") == PATIENT_ROLE for x in e.get("entity") or [])
    )
    print(
        f"audit night: {len(events)} AuditEvents ({dict(subtypes)}), outcomes "
        f"{dict(Counter(e['outcome'] for e in events))}, patients in the patient field "
        f"{len(in_patient_field)}, patient data outside it: 0 of {len(patient_data)} values; "
        f"night resources validated on HAPI: { {k: len(v) for k, v in written.items()} }"
    )
    print("sample AuditEvent:", json.dumps(sample, indent=1))
    print(
        "its query decoded:",
        [base64.b64decode(x["query"]).decode() for x in sample["entity"] if "query" in x],
    )
