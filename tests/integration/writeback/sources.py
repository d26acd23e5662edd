"""What write-back tests load first: the resources their scores point at.

HAPI FHIR enforces referential integrity on write, so a RiskAssessment's ``subject``,
``encounter`` and (literal) ``basis`` must exist on the server, as they do in a hospital.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from dipro_fhir.core.scores import Score
from dipro_fhir.fhir.client import FhirClient

_EFFECTIVE = "2026-11-23T12:00:00Z"


def load_sources(client: FhirClient, scores: Sequence[Score], *, with_basis: bool = True) -> None:
    """PUT the patients, encounters and (``with_basis``) basis resources of ``scores``."""
    resources: dict[str, dict[str, Any]] = {}
    for score in scores:
        patient = f"Patient/{score.patient_id}"
        resources[patient] = {"resourceType": "Patient", "id": score.patient_id}
        if score.encounter_id is not None:
            resources[f"Encounter/{score.encounter_id}"] = {
                "resourceType": "Encounter",
                "id": score.encounter_id,
                "status": "in-progress",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "IMP",
                },
                "subject": {"reference": patient},
            }
        for ref in score.basis if with_basis else ():
            resources[ref.reference] = _source(ref.resource_type, ref.id, patient)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": key}}
            for key, r in resources.items()
        ],
    }
    client.transaction(bundle, idempotent=True)


def provenance_count_per_target(client: FhirClient) -> Counter[str]:
    """How many Provenances on the server target each resource (``Type/id``)."""
    return Counter(
        target["reference"]
        for provenance in client.search("Provenance", {})
        for target in provenance.get("target") or []
    )


def _source(resource_type: str, resource_id: str, patient: str) -> dict[str, Any]:
    if resource_type == "ImagingStudy":
        return {
            "resourceType": "ImagingStudy",
            "id": resource_id,
            "status": "available",
            "subject": {"reference": patient},
            "started": _EFFECTIVE,
        }
    return {
        "resourceType": resource_type,
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": patient},
        "effectiveDateTime": _EFFECTIVE,
        "valueQuantity": {"value": 80, "unit": "/min"},
    }
