"""Where extraction reads FHIR data from: the ``FhirSource`` interface and its HTTP form.

Extraction depends on :class:`FhirSource` only. Two real implementations exist:
:class:`HttpFhirSource` (a FHIR R4 server through :class:`~dipro_fhir.fhir.client.FhirClient`)
and :class:`~dipro_fhir.fhir.ndjson_source.NdjsonFhirSource` (Bulk Data NDJSON files). Both
yield raw JSON dicts, apply the same matching rules (:mod:`dipro_fhir.fhir.matching`) and
report data problems as :class:`~dipro_fhir.timeline.MappingIssue` through
:meth:`FhirSource.take_issues` instead of raising them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.matching import (
    ACTIVE_ENCOUNTER_CLASSES,
    effective_range,
    is_active_encounter,
    last_updated,
    matches_codes,
    overlaps,
    reference_id,
    subject_id,
)
from dipro_fhir.timeline import MappingIssue

DATA_TYPES = ("Observation", "ImagingStudy")


@runtime_checkable
class FhirSource(Protocol):
    """What extraction needs from a FHIR data source. Times must be timezone-aware."""

    def patient(self, patient_id: str) -> dict[str, Any]:
        """Return the Patient; raise ``ResourceNotFound`` if there is none."""
        ...

    def encounters(self, patient_id: str) -> Iterator[dict[str, Any]]:
        """Yield the patient's Encounters."""
        ...

    def observations(
        self,
        patient_id: str,
        *,
        since: datetime,
        until: datetime,
        codes: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield Observations effective in ``[since, until)``, optionally only ``codes``
        (tokens ``system|code`` or ``code``)."""
        ...

    def imaging_studies(self, patient_id: str) -> Iterator[dict[str, Any]]:
        """Yield the patient's ImagingStudies."""
        ...

    def diagnostic_reports(self, patient_id: str) -> Iterator[dict[str, Any]]:
        """Yield the patient's DiagnosticReports (training labels: coded comparisons)."""
        ...

    def active_encounter_patients(self, as_of: datetime) -> Iterator[tuple[str, str]]:
        """Yield ``(patient_id, encounter_id)`` of encounters under way at ``as_of``
        (:func:`~dipro_fhir.fhir.matching.is_active_encounter`), sorted."""
        ...

    def patients_with_data_since(self, since: datetime, until: datetime) -> Iterator[str]:
        """Yield, sorted and once each, patients with an Observation or ImagingStudy whose
        ``meta.lastUpdated`` lies in ``[since, until)``."""
        ...

    def group_members(self, group_id: str) -> list[str]:
        """Return the Patient ids of a Group's active members, in Group order."""
        ...

    def take_issues(self) -> list[MappingIssue]:
        """Return the data problems met since the last call, and forget them."""
        ...


class HttpFhirSource:
    """A :class:`FhirSource` over a FHIR R4 REST server.

    Server-side filters (``subject=Patient/id``, ``date=ge..&date=lt..``, ``code``, ``class``,
    ``_lastUpdated``) keep transfers small; results are re-checked with the same rules as
    the NDJSON source, so a lenient server cannot widen what extraction sees.
    """

    def __init__(self, client: FhirClient) -> None:
        self.client = client
        self._issues: list[MappingIssue] = []

    def patient(self, patient_id: str) -> dict[str, Any]:
        return self.client.read("Patient", patient_id)

    def encounters(self, patient_id: str) -> Iterator[dict[str, Any]]:
        yield from self._owned("Encounter", patient_id, {"subject": f"Patient/{patient_id}"})

    def observations(
        self,
        patient_id: str,
        *,
        since: datetime,
        until: datetime,
        codes: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, str | list[str]] = {
            "subject": f"Patient/{patient_id}",
            "date": [f"ge{_instant(since)}", f"lt{_instant(until)}"],
        }
        if codes is not None:
            if not codes:
                return
            params["code"] = ",".join(codes)
        for resource in self._owned("Observation", patient_id, params):
            if overlaps(effective_range(resource), since, until) and matches_codes(resource, codes):
                yield resource

    def imaging_studies(self, patient_id: str) -> Iterator[dict[str, Any]]:
        yield from self._owned("ImagingStudy", patient_id, {"subject": f"Patient/{patient_id}"})

    def diagnostic_reports(self, patient_id: str) -> Iterator[dict[str, Any]]:
        params: dict[str, str | list[str]] = {"subject": f"Patient/{patient_id}"}
        yield from self._owned("DiagnosticReport", patient_id, params)

    def active_encounter_patients(self, as_of: datetime) -> Iterator[tuple[str, str]]:
        # Two searches, because servers differ on Periods without an end: the live
        # in-progress encounters, and those whose period covers as_of (for backfills).
        classes = ",".join(sorted(ACTIVE_ENCOUNTER_CLASSES))
        point = _instant(as_of)
        queries: list[dict[str, str | list[str]]] = [
            {"class": classes, "status": "in-progress"},
            {"class": classes, "date": [f"le{point}", f"ge{point}"]},
        ]
        found: set[tuple[str, str]] = set()
        for params in queries:
            for encounter in self.client.search("Encounter", params):
                pair = encounter_pair(encounter)
                if pair is not None and is_active_encounter(encounter, as_of):
                    found.add(pair)
        yield from sorted(found)

    def patients_with_data_since(self, since: datetime, until: datetime) -> Iterator[str]:
        found: set[str] = set()
        window = [f"ge{_instant(since)}", f"lt{_instant(until)}"]
        for resource_type in DATA_TYPES:
            for resource in self.client.search(resource_type, {"_lastUpdated": window}):
                stamp = last_updated(resource)
                patient_id = subject_id(resource)
                if patient_id and stamp is not None and since <= stamp < until:
                    found.add(patient_id)
        yield from sorted(found)

    def group_members(self, group_id: str) -> list[str]:
        return group_patient_ids(self.client.read("Group", group_id))

    def take_issues(self) -> list[MappingIssue]:
        issues, self._issues = self._issues, []
        return issues

    def _owned(
        self, resource_type: str, patient_id: str, params: dict[str, str | list[str]]
    ) -> Iterator[dict[str, Any]]:
        for resource in self.client.search(resource_type, params):
            if resource.get("resourceType") != resource_type or subject_id(resource) != patient_id:
                self._issues.append(
                    MappingIssue(
                        "unexpected-search-result",
                        f"{resource.get('resourceType')}/{resource.get('id')}",
                        f"{resource_type} search returned a resource of another type or patient",
                    )
                )
                continue
            yield resource


def group_patient_ids(group: dict[str, Any]) -> list[str]:
    """Return the Patient ids of ``Group.member.entity`` that are not ``inactive``."""
    members: list[str] = []
    for member in group.get("member") or []:
        if not isinstance(member, dict) or member.get("inactive") is True:
            continue
        entity = member.get("entity")
        patient_id = (
            reference_id(entity.get("reference"), "Patient") if isinstance(entity, dict) else None
        )
        if patient_id is not None and patient_id not in members:
            members.append(patient_id)
    return members


def encounter_pair(encounter: dict[str, Any]) -> tuple[str, str] | None:
    """Return ``(patient_id, encounter_id)`` of an Encounter, or ``None`` if either lacks."""
    patient_id, encounter_id = subject_id(encounter), encounter.get("id")
    if patient_id is None or not isinstance(encounter_id, str):
        return None
    return patient_id, encounter_id


def _instant(moment: datetime) -> str:
    """Format an aware datetime as a FHIR instant for search prefixes."""
    if moment.tzinfo is None:
        raise ValueError("search times must be timezone-aware")
    return moment.isoformat()
