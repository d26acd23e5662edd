"""Where extraction reads FHIR data from: the ``FhirSource`` interface and its HTTP form.

Extraction depends on :class:`FhirSource` only. Two real implementations exist:
:class:`HttpFhirSource` (a FHIR R4 server through :class:`~dipro_fhir.fhir.client.FhirClient`)
and :class:`~dipro_fhir.fhir.ndjson_source.NdjsonFhirSource` (Bulk Data NDJSON files). Both
yield raw JSON dicts, apply the same matching rules (:mod:`dipro_fhir.fhir.matching`) and
report data problems as :class:`~dipro_fhir.core.timeline.MappingIssue` instead of raising them:
problems of one patient through :meth:`FhirSource.patient_issues`, problems that belong to
no patient that can be told (a line that is not JSON, a reference to nobody, a search
result of the wrong type) through :meth:`FhirSource.take_issues`. A problem is never
attached to whichever patient happens to be processed first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from dipro_fhir.core.timeline import MappingIssue
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.cohort import DEFAULT_RULE, CohortRule, one_per_patient
from dipro_fhir.fhir.matching import (
    effective_range,
    last_updated,
    matches_codes,
    overlaps,
    reference_id,
    subject_id,
)
from dipro_fhir.fhir.problems import PatientProblems
from dipro_fhir.mapping.times import parse_fhir_time

log = logging.getLogger(__name__)

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

    def active_encounter_patients(
        self, as_of: datetime, rule: CohortRule = DEFAULT_RULE
    ) -> Iterator[tuple[str, str]]:
        """Yield ``(patient_id, encounter_id)``, sorted, one per patient, of the encounters
        ``rule`` admits at ``as_of`` (:mod:`dipro_fhir.fhir.cohort`)."""
        ...

    def finished_stay_patients(self, until: datetime) -> Iterator[str]:
        """Yield, sorted and once each, patients with an Encounter that has ended by
        ``until`` (``period.end`` at or before it): the patients whose outcome is known, for
        training and evaluation."""
        ...

    def patients_with_data_since(self, since: datetime, until: datetime) -> Iterator[str]:
        """Yield, sorted and once each, patients with an Observation or ImagingStudy whose
        ``meta.lastUpdated`` lies in ``[since, until)``."""
        ...

    def group_members(self, group_id: str) -> list[str]:
        """Return the Patient ids of a Group's active members, in Group order."""
        ...

    def list_members(self, list_id: str) -> list[tuple[str, str | None]]:
        """Return ``(patient_id, encounter_id or None)`` of a List's entries, in List order
        (``List.entry.item`` naming a Patient or an Encounter; deleted entries skipped)."""
        ...

    def scan_observations(self) -> Iterator[dict[str, Any]]:
        """Stream every Observation of the source (``code`` and ``component`` at least)."""
        ...

    def patient_issues(self, patient_id: str) -> list[MappingIssue]:
        """Return the data problems of one patient met so far, and forget them."""
        ...

    def take_issues(self) -> list[MappingIssue]:
        """Return the data problems that belong to no patient, met since the last call,
        and forget them."""
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
        self._problems = PatientProblems()

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

    def active_encounter_patients(
        self, as_of: datetime, rule: CohortRule = DEFAULT_RULE
    ) -> Iterator[tuple[str, str]]:
        # Two searches per filter, because servers differ on Periods without an end: the
        # live in-progress encounters, and those whose period covers as_of (backfills).
        icu: set[str] = set()
        if rule.kind == "class":
            filters = [{"class": ",".join(rule.class_tokens())}]
        else:
            icu = self._location_ids(rule)
            if not icu:
                log.warning(
                    "cohort rule location: no Location matches (%s)", rule.describe_locations()
                )
            ids = sorted(icu)
            filters = [
                {"location": ",".join(f"Location/{i}" for i in ids[n : n + 50])}
                for n in range(0, len(ids), 50)
            ]
        point = _instant(as_of)
        found: dict[str, dict[str, Any]] = {}
        for base in filters:
            for extra in ({"status": "in-progress"}, {"date": [f"le{point}", f"ge{point}"]}):
                params: dict[str, str | list[str]] = {**base, **extra}
                for encounter in self.client.search("Encounter", params):
                    if rule.admits(encounter, as_of, icu) and encounter_pair(encounter):
                        found[str(encounter["id"])] = encounter
        yield from one_per_patient(found.values())

    def _location_ids(self, rule: CohortRule) -> set[str]:
        """Ids of the ICU Locations under ``rule``: every Location is read (a hospital has
        hundreds, not millions), because names and physicalType are not ``type`` searches."""
        params = {"_elements": "id,name,alias,type,physicalType"}
        found = self.client.search("Location", params)
        return {str(loc["id"]) for loc in found if loc.get("id") and rule.is_icu(loc)}

    def finished_stay_patients(self, until: datetime) -> Iterator[str]:
        params: dict[str, str | list[str]] = {
            "date": f"le{_instant(until)}",
            "_elements": "subject,period,status",
        }
        found = self.client.search("Encounter", params)
        yield from finished_stay_subjects(found, until)

    def patients_with_data_since(self, since: datetime, until: datetime) -> Iterator[str]:
        found: set[str] = set()
        window = [f"ge{_instant(since)}", f"lt{_instant(until)}"]
        # Only the subject and meta.lastUpdated are read: _elements keeps the answers small.
        params: dict[str, str | list[str]] = {"_lastUpdated": window, "_elements": "subject"}
        for resource_type in DATA_TYPES:
            for resource in self.client.search(resource_type, params):
                stamp = last_updated(resource)
                patient_id = subject_id(resource)
                if patient_id and stamp is not None and since <= stamp < until:
                    found.add(patient_id)
        yield from sorted(found)

    def group_members(self, group_id: str) -> list[str]:
        return group_patient_ids(self.client.read("Group", group_id))

    def list_members(self, list_id: str) -> list[tuple[str, str | None]]:
        return list_entries(self.client.read("List", list_id), self._encounter_subject)

    def _encounter_subject(self, encounter_id: str) -> str | None:
        return subject_id(self.client.read("Encounter", encounter_id))

    def scan_observations(self) -> Iterator[dict[str, Any]]:
        # _elements keeps transfers small (servers that ignore it send whole resources).
        yield from self.client.search("Observation", {"_elements": "code,component"})

    def patient_issues(self, patient_id: str) -> list[MappingIssue]:
        # A server resolves references itself; its odd answers are no patient's. Repeated
        # ids and unplaceable times of the patient's own resources are the patient's.
        return self._problems.take(patient_id)

    def take_issues(self) -> list[MappingIssue]:
        issues, self._issues = self._issues, []
        return issues

    def _owned(
        self, resource_type: str, patient_id: str, params: dict[str, str | list[str]]
    ) -> Iterator[dict[str, Any]]:
        found = self._matching(resource_type, patient_id, params)
        yield from self._problems.screen(patient_id, found)

    def _matching(
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


def list_entries(
    resource: dict[str, Any], encounter_subject: Callable[[str], str | None]
) -> list[tuple[str, str | None]]:
    """``(patient_id, encounter_id)`` of ``List.entry.item`` (Patient or Encounter
    references), in order, skipping ``entry.deleted`` and entries of other types.

    Args:
        resource: The List.
        encounter_subject: The Patient id of an Encounter id (the source reads it).
    """
    found: list[tuple[str, str | None]] = []
    if resource.get("status") == "entered-in-error":
        return found
    for entry in resource.get("entry") or []:
        item = entry.get("item") if isinstance(entry, dict) and not entry.get("deleted") else None
        ref = item.get("reference") if isinstance(item, dict) else None
        patient_id, encounter_id = reference_id(ref, "Patient"), reference_id(ref, "Encounter")
        if encounter_id is not None:
            patient_id = encounter_subject(encounter_id)
        if patient_id is not None and (patient_id, encounter_id) not in found:
            found.append((patient_id, encounter_id))
    return found


def finished_stay_subjects(
    encounters: Iterable[dict[str, Any]], until: datetime, subject: Any = subject_id
) -> Iterator[str]:
    """Sorted Patient ids of the encounters whose ``period.end`` lies at or before ``until``."""
    found: set[str] = set()
    for encounter in encounters:
        period = encounter.get("period")
        end = parse_fhir_time(period.get("end")) if isinstance(period, dict) else None
        patient_id = subject(encounter)
        if patient_id and end is not None and end.value <= until:
            found.add(patient_id)
    yield from sorted(found)


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
