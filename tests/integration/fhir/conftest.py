"""Shared data builders and a fast-retry client factory for the FHIR integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dipro_fhir.fhir import FhirAuth, FhirClient, RetryPolicy

T0 = datetime(2024, 3, 1, tzinfo=UTC)
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=2)


def patient(pid: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-01-01"}


def observation(oid: str, pid: str, when: datetime, code: str = "8867-4") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when.isoformat().replace("+00:00", "Z"),
        "valueQuantity": {
            "value": 80,
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def encounter(
    eid: str, pid: str, status: str, klass: str, start: datetime, end: datetime | None = None
) -> dict[str, Any]:
    period = {"start": start.isoformat().replace("+00:00", "Z")}
    if end is not None:
        period["end"] = end.isoformat().replace("+00:00", "Z")
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": f"Patient/{pid}"},
        "period": period,
    }


def imaging_study(sid: str, pid: str) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "id": sid,
        "status": "available",
        "subject": {"reference": f"Patient/{pid}"},
        "started": T0.isoformat().replace("+00:00", "Z"),
    }


def transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction of PUTs with client ids (idempotent)."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def hourly_observations(pid: str, count: int, start: datetime = T0) -> list[dict[str, Any]]:
    return [observation(f"{pid}-o{i}", pid, start + timedelta(hours=i)) for i in range(count)]


@pytest.fixture
def make_client() -> Iterator[Callable[..., FhirClient]]:
    """Factory of clients with fast retries and short timeouts; all closed at teardown."""
    clients: list[FhirClient] = []

    def make(base_url: str, *, auth: FhirAuth | None = None, **kwargs: Any) -> FhirClient:
        options: dict[str, Any] = {"retry": FAST_RETRY, "timeout_s": 5.0, **kwargs}
        client = FhirClient(base_url, auth=auth, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
