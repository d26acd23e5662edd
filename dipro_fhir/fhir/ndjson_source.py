"""A :class:`~dipro_fhir.fhir.source.FhirSource` over FHIR Bulk Data NDJSON files.

The layout is what a Bulk Data ``$export`` leaves behind (https://hl7.org/fhir/uv/bulkdata/):
one folder of NDJSON files, one resource per line, e.g. ``Patient.ndjson``,
``Observation.1.ndjson``. Which file holds which type is told by its first line, not its name,
and ``.ndjson.gz`` is read too (:mod:`dipro_fhir.fhir.ndjson_files`), so exports named
otherwise (MIMIC-IV's ``MimicObservationLabevents.ndjson.gz``) are read whole; a file whose
type cannot be told is a problem of no patient. Files are never loaded whole: the first
per-patient question about a type scans its files once and keeps only byte offsets per patient;
answers then seek to those lines. Cohort questions stream the files. Lines that are not JSON
objects of the expected type, or that name no patient, become ``MappingIssue`` records (byte
offsets only, no content) instead of errors; so do lines past the input limits (size, JSON
nesting: :mod:`dipro_fhir.core.limits`), whose patient cannot be read.

Who a problem belongs to: a resource whose ``subject`` is a ``urn:uuid:`` reference (left
over when a transaction Bundle is split into NDJSON: the Bundle's ``fullUrl`` is gone) is
resolved to the Patient whose ``id`` is that UUID when the export holds one (Synthea and
most Bundle writers use the UUID as the id); the patient then gets one
``urn-uuid-reference`` issue per resource type, counting them. A reference that resolves
to no Patient, or no subject at all, belongs to *no patient* (:meth:`take_issues`), never to
whoever is processed first.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dipro_fhir.core.errors import ResourceNotFound
from dipro_fhir.core.limits import DEFAULT_LIMITS, InputLimitExceeded, InputLimits, loads
from dipro_fhir.core.timeline import MappingIssue
from dipro_fhir.fhir.cohort import DEFAULT_RULE, CohortRule, one_per_patient
from dipro_fhir.fhir.matching import (
    effective_range,
    last_updated,
    matches_codes,
    overlaps,
    subject_id,
)
from dipro_fhir.fhir.ndjson_files import NdjsonCatalog
from dipro_fhir.fhir.problems import PatientProblems
from dipro_fhir.fhir.source import (
    DATA_TYPES,
    finished_stay_subjects,
    group_patient_ids,
    list_entries,
)

log = logging.getLogger(__name__)

Location = tuple[Path, int]  # a file and the byte offset of one line in it
URN_UUID = "urn:uuid:"


class NdjsonFhirSource:
    """Read FHIR resources from Bulk Data NDJSON files in ``directory``."""

    def __init__(self, directory: str | Path, limits: InputLimits = DEFAULT_LIMITS) -> None:
        self.directory = Path(directory)
        self.limits = limits
        if not self.directory.is_dir():
            raise FileNotFoundError(f"NDJSON folder not found: {self.directory}")
        self._index: dict[str, dict[str, list[Location]]] = {}
        self._issues: list[MappingIssue] = []
        self._reported: set[Location] = set()
        self._patient_ids: set[str] | None = None
        self._resolved: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._problems = PatientProblems()
        self.catalog = NdjsonCatalog.scan(self.directory)
        for path, why in self.catalog.unreadable.items():
            self._issues.append(MappingIssue("unreadable-file", "NDJSON", f"{path.name}: {why}"))

    def patient(self, patient_id: str) -> dict[str, Any]:
        for resource in list(self._by_patient("Patient", patient_id)):  # all: duplicates
            return resource
        raise ResourceNotFound("Patient not in the NDJSON export", status=404)

    def encounters(self, patient_id: str) -> Iterator[dict[str, Any]]:
        yield from self._by_patient("Encounter", patient_id)

    def observations(
        self,
        patient_id: str,
        *,
        since: datetime,
        until: datetime,
        codes: Sequence[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        for resource in self._by_patient("Observation", patient_id):
            if overlaps(effective_range(resource), since, until) and matches_codes(resource, codes):
                yield resource

    def imaging_studies(self, patient_id: str) -> Iterator[dict[str, Any]]:
        yield from self._by_patient("ImagingStudy", patient_id)

    def diagnostic_reports(self, patient_id: str) -> Iterator[dict[str, Any]]:
        yield from self._by_patient("DiagnosticReport", patient_id)

    def active_encounter_patients(
        self, as_of: datetime, rule: CohortRule = DEFAULT_RULE
    ) -> Iterator[tuple[str, str]]:
        icu: set[str] = set()
        if rule.kind == "location":
            icu = {
                str(loc["id"])
                for _, loc in self._stream("Location")
                if loc.get("id") and rule.is_icu(loc)
            }
            if not icu:
                log.warning(
                    "cohort rule location: no Location matches (%s)", rule.describe_locations()
                )
        admitted = [
            encounter
            for _, encounter in self._stream("Encounter")
            if encounter.get("id") and rule.admits(encounter, as_of, icu)
        ]
        yield from one_per_patient(admitted, self._subject)

    def _subject(self, resource: dict[str, Any]) -> str | None:
        """The Patient id of a resource, ``urn:uuid:`` subjects resolved (module doc)."""
        return subject_id(resource) or self._urn_patient(resource)

    def finished_stay_patients(self, until: datetime) -> Iterator[str]:
        encounters = (e for _, e in self._stream("Encounter"))
        yield from finished_stay_subjects(encounters, until, self._subject)

    def patients_with_data_since(self, since: datetime, until: datetime) -> Iterator[str]:
        found: set[str] = set()
        for resource_type in DATA_TYPES:
            for _, resource in self._stream(resource_type):
                stamp, patient_id = last_updated(resource), subject_id(resource)
                if patient_id and stamp is not None and since <= stamp < until:
                    found.add(patient_id)
        yield from sorted(found)

    def group_members(self, group_id: str) -> list[str]:
        for _, group in self._stream("Group"):
            if group.get("id") == group_id:
                return group_patient_ids(group)
        raise ResourceNotFound("Group not in the NDJSON export", status=404)

    def list_members(self, list_id: str) -> list[tuple[str, str | None]]:
        for _, found in self._stream("List"):
            if found.get("id") == list_id:
                return list_entries(found, self._encounter_subject)
        raise ResourceNotFound("List not in the NDJSON export", status=404)

    def _encounter_subject(self, encounter_id: str) -> str | None:
        for _, encounter in self._stream("Encounter"):
            if encounter.get("id") == encounter_id:
                return subject_id(encounter)
        return None

    def scan_observations(self) -> Iterator[dict[str, Any]]:
        for _, resource in self._stream("Observation"):
            yield resource

    def patient_issues(self, patient_id: str) -> list[MappingIssue]:
        resolved = self._resolved.pop(patient_id, Counter())
        return self._problems.take(patient_id) + [
            MappingIssue(
                "urn-uuid-reference",
                resource_type,
                f"{count} subject reference(s) urn:uuid:<id> resolved to this Patient's id",
            )
            for resource_type, count in sorted(resolved.items())
        ]

    def take_issues(self) -> list[MappingIssue]:
        issues, self._issues = self._issues, []
        return issues

    # -- files ----------------------------------------------------------------------------

    def files(self, resource_type: str) -> list[Path]:
        """Return the NDJSON files of one type, told by content (see the module docstring)."""
        return self.catalog.files(resource_type)

    def _by_patient(self, resource_type: str, patient_id: str) -> Iterator[dict[str, Any]]:
        yield from self._problems.screen(patient_id, self._lines_of(resource_type, patient_id))

    def _lines_of(self, resource_type: str, patient_id: str) -> Iterator[dict[str, Any]]:
        index = self._index.get(resource_type)
        if index is None:
            index = self._build_index(resource_type)
            self._index[resource_type] = index
        for path, offset in index.get(patient_id, []):
            with path.open("rb") as handle:
                handle.seek(offset)
                resource = loads(handle.readline(), self.limits)
            yield resource

    def _build_index(self, resource_type: str) -> dict[str, list[Location]]:
        """Locations of each patient's resources of one type. A resource id filed under two
        patients (an export that merged two records, a copied line) is used for neither:
        it is each patient's ``id-under-two-patients`` problem."""
        index: defaultdict[str, list[Location]] = defaultdict(list)
        first: dict[str, tuple[str, Location]] = {}
        shared: defaultdict[str, set[tuple[str, Location]]] = defaultdict(set)
        count = 0
        for (path, offset), resource in self._stream(resource_type):
            patient_id = subject_id(resource) or self._resolve_urn(resource, path, offset)
            if patient_id is None:
                continue
            index[patient_id].append((path, offset))
            count += 1
            rid = resource.get("id")
            if isinstance(rid, str) and resource_type != "Patient":
                owner = first.setdefault(rid, (patient_id, (path, offset)))
                if owner[0] != patient_id:
                    shared[rid].update((owner, (patient_id, (path, offset))))
        for rid, places in shared.items():
            patients = {p for p, _ in places}
            detail = f"the same id is filed under {len(patients)} patients: used for none"
            for patient_id, location in places:
                index[patient_id].remove(location)
                issue = MappingIssue(
                    "id-under-two-patients", f"{resource_type}/{rid}"[:200], detail
                )
                self._problems.record(patient_id, issue)
        log.info("indexed %s: resources=%d patients=%d", resource_type, count, len(index))
        return dict(index)

    def _urn_patient(self, resource: dict[str, Any]) -> str | None:
        """The Patient a ``urn:uuid:`` subject names, when the export holds one."""
        subject = resource.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if not isinstance(reference, str) or not reference.startswith(URN_UUID):
            return None
        if self._patient_ids is None:
            self._patient_ids = {str(p.get("id")) for _, p in self._stream("Patient")}
        candidate = reference.removeprefix(URN_UUID)
        return candidate if candidate in self._patient_ids else None

    def _resolve_urn(self, resource: dict[str, Any], path: Path, offset: int) -> str | None:
        """:meth:`_urn_patient`, counted for that patient's issue; or, when it names nobody,
        the line reported as a problem of no patient."""
        resource_type = str(resource.get("resourceType"))
        found = self._urn_patient(resource)
        if found is not None:
            self._resolved[found][resource_type] += 1
            return found
        subject = resource.get("subject")
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if isinstance(reference, str) and reference.startswith(URN_UUID):
            detail = "subject urn:uuid resolves to no Patient of the export"
            self._report("unresolved-reference", resource_type, path, offset, detail)
        else:
            self._report("no-subject", resource_type, path, offset, "names no Patient")
        return None

    def _stream(self, resource_type: str) -> Iterator[tuple[Location, dict[str, Any]]]:
        for path in self.files(resource_type):
            with path.open("rb") as handle:
                offset = 0
                for line in handle:
                    here, offset = offset, offset + len(line)
                    if not line.strip():
                        continue
                    resource = self._decode(line, resource_type, path, here)
                    if resource is not None:
                        yield (path, here), resource

    def _decode(
        self, line: bytes, resource_type: str, path: Path, offset: int
    ) -> dict[str, Any] | None:
        if len(line) > self.limits.max_resource_bytes:
            detail = f"line of {len(line)} bytes > limit {self.limits.max_resource_bytes}"
            self._report("resource-too-large", resource_type, path, offset, detail)
            return None
        try:
            resource = loads(line, self.limits)
        except InputLimitExceeded:
            detail = f"nested deeper than {self.limits.max_json_depth} levels"
            self._report("json-too-deep", resource_type, path, offset, detail)
            return None
        except ValueError:
            self._report("invalid-json", resource_type, path, offset, "line is not JSON")
            return None
        if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
            self._report("invalid-resource", resource_type, path, offset, "not a " + resource_type)
            return None
        return resource

    def _report(self, code: str, resource_type: str, path: Path, offset: int, what: str) -> None:
        if (path, offset) in self._reported:
            return  # each bad line is reported once, however often it is streamed
        self._reported.add((path, offset))
        detail = f"{self.catalog.source_name(path)} at byte {offset}: {what}"
        self._issues.append(MappingIssue(code, resource_type, detail))
        log.warning("ndjson %s: %s in %s", code, resource_type, self.catalog.source_name(path))
