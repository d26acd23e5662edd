"""FHIR R4 JSON for a synthetic patient, and transaction bundles to load it.

Plain JSON (``dict``) in FHIR's camelCase, as a server receives it; every resource has a
client-assigned id so loading twice is idempotent (``PUT``, DESIGN.md). What each resource
carries for the pipeline and for training labels:

* ``Patient``: US Core race/ethnicity extensions, ``communication``, ``maritalStatus`` and
  ``deceasedDateTime`` (mortality label).
* ``Encounter``: class IMP, type ICU, ``period`` (LoS label), ``hospitalization.
  dischargeDisposition`` (``exp`` = died), ``in-progress`` while still admitted.
* ``Observation``: vital-signs / laboratory, LOINC + UCUM ``valueQuantity``, the BP panel
  85354-9 with components, ``dataAbsentReason``, ``issued`` and ``meta.lastUpdated``.
* ``ImagingStudy``: ``urn:dicom:uid`` identifier, series/instances with SOP classes, an
  ``Endpoint`` for the DICOMweb base.
* ``DiagnosticReport`` (radiology): one contained Observation per finding of the comparison
  with the prior study, ``valueCodeableConcept`` = worsened / improved / no change
  (:data:`PROGRESSION_SYSTEM`), components per region (progression labels, reference §3.1).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from dipro.vocab import FINDINGS, PROGRESSION_CLASSES, PROGRESSION_IGNORE, REGIONS
from dipro_fhir.mapping.labels import FINDING_SYSTEM, PROGRESSION_SYSTEM
from dipro_fhir.mapping.variables import LOINC_SYSTEM
from dipro_fhir.synth.records import Measurement, SynthObservation, SynthStudy

if TYPE_CHECKING:
    from dipro_fhir.synth.world import SyntheticPatient

Resource = dict[str, Any]

#: Code system of the anatomical regions (``dipro.vocab.REGIONS``). The finding and
#: progression systems are the ones training reads labels with (``mapping.labels``).
REGION_SYSTEM: Final[str] = "https://dipro-fhir.example.org/CodeSystem/cxr-region"
#: Id of the one DICOMweb Endpoint every ImagingStudy points to (default).
ENDPOINT_ID: Final[str] = "synth-dicomweb"

UCUM: Final = "http://unitsofmeasure.org"
_OMB: Final = "urn:oid:2.16.840.1.113883.6.238"
_US_CORE: Final = "http://hl7.org/fhir/us/core/StructureDefinition"
_OBS_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
_SOP_CLASS: Final = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}


def instant(when: datetime) -> str:
    """FHIR ``instant`` / ``dateTime`` in UTC with seconds (``2026-11-24T08:00:00Z``)."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def to_patient(p: SyntheticPatient) -> Resource:
    """``Patient`` of a synthetic patient."""
    d = p.demographics
    race = (
        _coding("http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK", "Unknown")
        if d.race_code == "UNK"
        else _coding(_OMB, d.race_code, d.race_display)
    )
    hispanic = d.ethnicity_code == "2135-2"
    res: Resource = {
        "resourceType": "Patient",
        "id": p.patient_id,
        "meta": {"lastUpdated": instant(p.stay.admitted)},
        "extension": [
            {
                "url": f"{_US_CORE}/us-core-race",
                "extension": [
                    {"url": "ombCategory", "valueCoding": race},
                    {"url": "text", "valueString": d.race_display},
                ],
            },
            {
                "url": f"{_US_CORE}/us-core-ethnicity",
                "extension": [
                    {
                        "url": "ombCategory",
                        "valueCoding": _coding(
                            _OMB,
                            d.ethnicity_code,
                            "Hispanic or Latino" if hispanic else "Not Hispanic or Latino",
                        ),
                    },
                    {"url": "text", "valueString": "Hispanic" if hispanic else "Not Hispanic"},
                ],
            },
        ],
        "identifier": [{"system": "urn:dipro:synthetic-mrn", "value": p.patient_id}],
        "gender": d.gender,
        "birthDate": d.birth_date.isoformat(),
    }
    if d.marital_status:
        res["maritalStatus"] = {
            "coding": [
                _coding("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", d.marital_status)
            ]
        }
    if d.language:
        res["communication"] = [
            {"language": {"coding": [_coding("urn:ietf:bcp:47", d.language)]}, "preferred": True}
        ]
    if p.stay.died and p.stay.finished:
        res["deceasedDateTime"] = instant(p.stay.discharged)
    return res


def to_encounter(p: SyntheticPatient) -> Resource:
    """The ICU ``Encounter``: ``finished`` with ``period.end`` and disposition, or in progress."""
    s = p.stay
    res: Resource = {
        "resourceType": "Encounter",
        "id": s.encounter_id,
        "meta": {"lastUpdated": instant(s.discharged if s.finished else s.admitted)},
        "status": "finished" if s.finished else "in-progress",
        "class": _coding(
            "http://terminology.hl7.org/CodeSystem/v3-ActCode", "IMP", "inpatient encounter"
        ),
        "type": [
            {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                        "ICU",
                        "intensive care unit",
                    )
                ]
            }
        ],
        "subject": {"reference": f"Patient/{p.patient_id}"},
        "period": {"start": instant(s.admitted)},
    }
    if s.finished:
        res["period"]["end"] = instant(s.discharged)
        res["hospitalization"] = {
            "dischargeDisposition": {
                "coding": [
                    _coding(
                        "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                        s.discharge_disposition,
                    )
                ]
            }
        }
    return res


def _quantity(m: Measurement) -> dict[str, Any]:
    return {"value": m.value, "unit": m.unit, "system": UCUM, "code": m.unit}


def _absent(reason: str) -> dict[str, Any]:
    system = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
    return {"coding": [_coding(system, reason)]}


def to_observation(p: SyntheticPatient, o: SynthObservation) -> Resource:
    """One vital-sign or lab ``Observation``."""
    res: Resource = {
        "resourceType": "Observation",
        "id": o.id,
        "meta": {"lastUpdated": instant(o.issued)},
        "status": o.status,
        "category": [{"coding": [_coding(_OBS_CATEGORY, o.category)]}],
        "code": {
            "coding": [
                _coding(LOINC_SYSTEM, o.panel_loinc)
                if o.panel_loinc
                else _coding(o.measurements[0].system, o.measurements[0].loinc)
            ]
        },
        "subject": {"reference": f"Patient/{p.patient_id}"},
        "encounter": {"reference": f"Encounter/{p.stay.encounter_id}"},
        "effectiveDateTime": instant(o.effective),
        "issued": instant(o.issued),
    }
    if o.panel_loinc:  # FHIR vital-signs BP profile: values in components
        res["component"] = [
            {"code": {"coding": [_coding(m.system, m.loinc)]}}
            | (
                {"valueQuantity": _quantity(m)}
                if m.value is not None
                else {"dataAbsentReason": _absent(o.absent_reason or "unknown")}
            )
            for m in o.measurements
        ]
    elif o.measurements[0].value is not None:
        res["valueQuantity"] = _quantity(o.measurements[0])
    else:
        res["dataAbsentReason"] = _absent(o.absent_reason or "unknown")
    return res


def to_endpoint(dicomweb_base_url: str, endpoint_id: str = ENDPOINT_ID) -> Resource:
    """The DICOMweb ``Endpoint`` (connection type dicom-wado-rs) studies point to."""
    return {
        "resourceType": "Endpoint",
        "id": endpoint_id,
        "status": "active",
        "connectionType": _coding(
            "http://terminology.hl7.org/CodeSystem/endpoint-connection-type", "dicom-wado-rs"
        ),
        "payloadType": [{"text": "DICOM"}],
        "payloadMimeType": ["application/dicom"],
        "address": dicomweb_base_url,
    }


def to_imaging_study(
    p: SyntheticPatient, s: SynthStudy, endpoint_id: str = ENDPOINT_ID
) -> Resource:
    """``ImagingStudy`` with one series per image (DICOM PS3.3 study/series/instance)."""
    series = [
        {
            "uid": img.series_uid,
            "number": n + 1,
            "modality": _coding("http://dicom.nema.org/resources/ontology/DCM", s.modality),
            "numberOfInstances": 1,
            "bodySite": _coding("http://snomed.info/sct", "51185008", "Thoracic structure"),
            "started": instant(s.started),
            "instance": [
                {
                    "uid": img.instance_uid,
                    "sopClass": _coding("urn:ietf:rfc:3986", f"urn:oid:{_SOP_CLASS[s.modality]}"),
                    "number": 1,
                    "title": img.view_position,
                }
            ],
        }
        for n, img in enumerate(s.images)
    ]
    return {
        "resourceType": "ImagingStudy",
        "id": s.imaging_study_id,
        "meta": {"lastUpdated": instant(s.started)},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{s.study_uid}"}],
        "status": "available",
        "modality": [_coding("http://dicom.nema.org/resources/ontology/DCM", s.modality)],
        "subject": {"reference": f"Patient/{p.patient_id}"},
        "encounter": {"reference": f"Encounter/{p.stay.encounter_id}"},
        "started": instant(s.started),
        "endpoint": [{"reference": f"Endpoint/{endpoint_id}"}],
        "numberOfSeries": len(series),
        "numberOfInstances": len(series),
        "description": "XR CHEST",
        "series": series,
    }


def to_diagnostic_report(p: SyntheticPatient, index: int) -> Resource:
    """Radiology ``DiagnosticReport`` of study ``index``, with coded comparison findings."""
    study = p.studies[index]
    res: Resource = {
        "resourceType": "DiagnosticReport",
        "id": study.report_id,
        "meta": {"lastUpdated": instant(study.report_issued)},
        "status": "final",
        "category": [
            {"coding": [_coding(LOINC_SYSTEM, "LP29684-5", "Radiology")]},
            {"coding": [_coding("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")]},
        ],
        "code": {"coding": [_coding(LOINC_SYSTEM, "18748-4", "Diagnostic imaging study")]},
        "subject": {"reference": f"Patient/{p.patient_id}"},
        "encounter": {"reference": f"Encounter/{p.stay.encounter_id}"},
        "effectiveDateTime": instant(study.started),
        "issued": instant(study.report_issued),
        "imagingStudy": [{"reference": f"ImagingStudy/{study.imaging_study_id}"}],
    }
    if index == 0:
        res["conclusion"] = "No prior study for comparison."
        return res
    prior = p.studies[index - 1]
    pair = p.truth.pairs[index - 1]
    contained = [
        _comparison(f, pair.labels[f], [r[f] for r in pair.region_labels], prior, study)
        for f in range(len(FINDINGS))
        if pair.labels[f] != PROGRESSION_IGNORE
    ]
    res["imagingStudy"].insert(0, {"reference": f"ImagingStudy/{prior.imaging_study_id}"})
    res["contained"] = contained
    res["result"] = [{"reference": f"#{c['id']}"} for c in contained]
    res["conclusion"] = (
        "; ".join(
            f"{FINDINGS[f]}: {PROGRESSION_CLASSES[c]}"
            for f, c in enumerate(pair.labels)
            if c != PROGRESSION_IGNORE
        )
        or "No findings."
    )
    return res


def _comparison(
    finding: int, label: int, regions: list[int], prior: SynthStudy, study: SynthStudy
) -> Resource:
    name = FINDINGS[finding]
    return {
        "resourceType": "Observation",
        "id": f"cmp-{name.replace('_', '-')}",
        "status": "final",
        "category": [{"coding": [_coding(_OBS_CATEGORY, "imaging")]}],
        "code": {"coding": [_coding(FINDING_SYSTEM, name)]},
        "effectiveDateTime": instant(study.started),
        "valueCodeableConcept": {
            "coding": [_coding(PROGRESSION_SYSTEM, PROGRESSION_CLASSES[label])]
        },
        "component": [
            {
                "code": {"coding": [_coding(REGION_SYSTEM, REGIONS[r])]},
                "valueCodeableConcept": {
                    "coding": [_coding(PROGRESSION_SYSTEM, PROGRESSION_CLASSES[c])]
                },
            }
            for r, c in enumerate(regions)
            if c != PROGRESSION_IGNORE
        ],
    }


def to_resources(p: SyntheticPatient, endpoint_id: str = ENDPOINT_ID) -> Iterator[Resource]:
    """Every resource of one patient, referenced ones first (Patient, Encounter, ...)."""
    yield to_patient(p)
    yield to_encounter(p)
    for o in p.observations:
        yield to_observation(p, o)
    for k, study in enumerate(p.studies):
        yield to_imaging_study(p, study, endpoint_id)
        yield to_diagnostic_report(p, k)


def transaction_bundles(
    resources: Iterable[Resource], *, batch_size: int = 500
) -> Iterator[Resource]:
    """Chunk resources into transaction Bundles of ``PUT Type/id`` entries (FHIR R4 3.1.0.11)."""
    entries: list[Resource] = []
    for res in resources:
        url = f"{res['resourceType']}/{res['id']}"
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}",
                "resource": res,
                "request": {"method": "PUT", "url": url},
            }
        )
        if len(entries) >= batch_size:
            yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}
            entries = []
    if entries:
        yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}
