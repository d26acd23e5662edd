#!/usr/bin/env python
"""Turn the Hannover COVID-19 chest X-ray development set into a FHIR + DICOM cohort.

Input: ``../shared/data/cxr-hannover-dev`` (67 real chest films of 11 patients, PNG, with
``data.csv``; CC BY 3.0: Winther HB, Laser H, Gerbel S, et al. COVID-19 Image Repository.
figshare 2020, doi:10.6084/m9.figshare.12275009). Output, in ``--out``:

* ``Patient.ndjson``, ``Encounter.ndjson``, ``Observation.ndjson``, ``ImagingStudy.ndjson``,
  ``Location.ndjson`` (FHIR R4, Bulk Data layout, what ``NdjsonFhirSource`` reads);
* ``dicom/<StudyInstanceUID>/<SOPInstanceUID>.dcm``: every real film wrapped as a DICOM
  Part 10 file (preamble, ``DICM``, file meta) of its modality (CR/DX) and view (AP/PA);
* ``conceptmaps/hannover-blood-gas.json``: the site's ConceptMap (see below);
* ``cohort.json``: counts, the as-of time that sees every patient after the last film, the
  site time zone, and the source's attribution.

What the CSV says and how it becomes FHIR (every offset in the CSV is in days, relative to
the day of that row's film):

* a patient's days are counted from the hospital admission (film day = -admission_offset);
  the hospital stay is an ``Encounter`` (class v3 ``IMP``); an ICU stay is an ``Encounter``
  of class ``ACUTE``, ``partOf`` the admission, at a ``Location`` of type ICU (v3 RoleCode),
  ending at the ICU release when the CSV gives one;
* a death is ``Patient.deceasedDateTime`` as a date only (only the day is known), and the
  admission ends that day with discharge disposition ``exp``; other admissions have no end
  (the CSV gives no discharge);
* labs: of the seven, only pCO2 is a DiPro variable. It becomes LOINC 11557-6 (pCO2 in
  blood, mm[Hg]): the CSV does not say the specimen is arterial, and some pO2 values are
  venous. The site's ConceptMap maps 11557-6 to DiPro's (arterial) pCO2 with equivalence
  ``narrower`` and says why: the site's decision, not the shipped map's. pO2 (LOINC
  11556-8) of the same blood gas is written too, as a real code no map knows: it shows in
  the run's data-quality summary. The other labs (CRP, D-dimer, LDH, lymphocytes,
  neutrophils, factor XII) are not written: their units are not given.

Only days are known, so times of day are fixed conventions, in Europe/Berlin: admission
06:00, ICU admission 06:30, labs 07:00, films 08:00, ICU release 18:00 (a film on the day of
an ICU admission or release belongs to the ICU stay). Calendar dates are
invented too (the set is de-identified): each patient's last film falls on ``--anchor``, so
one as-of time, the anchor day at 12:00, sees every patient after their last film.

The CSV is read into records by ``hannover_records.py`` beside this script.

Run: ``python scripts/hannover_cohort.py --out var/hannover`` (from the repository root).
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from hannover_records import (
    LABS,
    SITE_TZ,
    Clock,
    Film,
    PatientRecord,
    clock_for,
    read_records,
)
from PIL import Image  # Pillow: a dependency of dicomweb-client, itself a project dependency

from dipro_fhir.imaging.encode import to_dicom, write_dicom

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cxr-hannover-dev"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
THO = "http://terminology.hl7.org/CodeSystem"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_CODE = f"{THO}/v3-ActCode"
ROLE_CODE = f"{THO}/v3-RoleCode"
IDS = "https://dipro-fhir.example.org/hannover"
ATTRIBUTION = (
    "Winther HB, Laser H, Gerbel S, et al. COVID-19 Image Repository. figshare 2020, "
    "doi:10.6084/m9.figshare.12275009 (CC BY 3.0)"
)
#: SOP classes: CR Image Storage, Digital X-Ray Image Storage - For Presentation.
SOP_CLASS = {"CR": "1.2.840.10008.5.1.4.1.1.1", "DX": "1.2.840.10008.5.1.4.1.1.1.1"}


def _ref(resource_type: str, rid: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{rid}"}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def _concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    """A CodeableConcept of one Coding."""
    return {"coding": [_coding(system, code, display)]}


def patient_resource(record: PatientRecord, at: Clock) -> dict[str, Any]:
    """The Patient; a death is a date only."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": f"hann-{record.pid}",
        "identifier": [{"system": f"{IDS}/patient", "value": record.pid}],
        "gender": {"m": "male", "f": "female"}.get(record.sex, "unknown"),
    }
    if record.death_day is not None:
        resource["deceasedDateTime"] = at(record.death_day, "film").date().isoformat()
    return resource


def encounters(record: PatientRecord, at: Clock) -> list[dict[str, Any]]:
    """The hospital admission and, when there is one, the ICU stay inside it."""
    pid = f"hann-{record.pid}"
    hospital: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": f"{pid}-hosp",
        "status": "in-progress",
        "class": {"system": ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
        "subject": _ref("Patient", pid),
        "period": {"start": at(0, "admission").isoformat()},
    }
    if record.death_day is not None:
        hospital["status"] = "finished"
        hospital["period"]["end"] = at(record.death_day, "film").date().isoformat()
        disposition = _concept(f"{THO}/discharge-disposition", "exp", "Expired")
        hospital["hospitalization"] = {"dischargeDisposition": disposition}
    if record.icu is None:
        return [hospital]
    start, end = record.icu
    period = {"start": at(start, "icu_in").isoformat()}
    if end is not None:
        period["end"] = at(end, "icu_out").isoformat()
    icu = {
        "resourceType": "Encounter",
        "id": f"{pid}-icu",
        "status": "finished" if end is not None else "in-progress",
        "class": {"system": ACT_CODE, "code": "ACUTE", "display": "inpatient acute"},
        "subject": _ref("Patient", pid),
        "period": period,
        "location": [{"location": _ref("Location", "hann-icu"), "period": period}],
        "partOf": _ref("Encounter", f"{pid}-hosp"),
    }
    return [hospital, icu]


def _encounter_at(record: PatientRecord, day: int) -> str | None:
    """The encounter a film of ``day`` belongs to: the ICU stay, the admission, or none."""
    if day < 0:
        return None
    icu = record.icu
    if icu is not None and icu[0] <= day and (icu[1] is None or day <= icu[1]):
        return f"hann-{record.pid}-icu"
    return f"hann-{record.pid}-hosp"


def observations(record: PatientRecord, at: Clock) -> list[dict[str, Any]]:
    """The blood-gas labs as LOINC-coded Observations in mm[Hg]."""
    found = []
    for lab, day, value in record.labs:
        code, display = LABS[lab]
        when = at(day, "lab")
        found.append(
            {
                "resourceType": "Observation",
                "id": f"hann-{record.pid}-{lab}-day{day}".replace("day-", "daym"),
                "status": "final",
                "category": [_concept(f"{THO}/observation-category", "laboratory")],
                "code": _concept(LOINC, code, display),
                "subject": _ref("Patient", f"hann-{record.pid}"),
                "effectiveDateTime": when.isoformat(),
                "issued": (when + timedelta(hours=1)).isoformat(),
                "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
            }
        )
    return found


def _uids(film: Film) -> tuple[str, str, str]:
    """Deterministic study, series and instance UIDs of a film: ``2.25.<UUID>`` (PS3.5 B.2)
    with a name-based UUID, so a re-run writes the same objects."""
    uid = [
        f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, f'{IDS}/{film.image_id}/{p}').int}"
        for p in ("study", "series", "instance")
    ]
    return uid[0], uid[1], uid[2]


def imaging_study(record: PatientRecord, film: Film, at: Clock) -> dict[str, Any]:
    """The ImagingStudy of one film (R4: Study Instance UID in ``identifier``)."""
    study, series, instance = _uids(film)
    sop_class = _coding("urn:ietf:rfc:3986", f"urn:oid:{SOP_CLASS[film.modality]}")
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "id": f"hann-{film.image_id}",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study}"}],
        "status": "available",
        "subject": _ref("Patient", f"hann-{record.pid}"),
        "started": at(film.day, "film").isoformat(),
        "numberOfSeries": 1,
        "numberOfInstances": 1,
        "series": [
            {
                "uid": series,
                "modality": _coding(DCM, film.modality),
                "bodySite": _coding("http://snomed.info/sct", "51185008", "Thorax"),
                "instance": [{"uid": instance, "sopClass": sop_class}],
            }
        ],
    }
    encounter = _encounter_at(record, film.day)
    if encounter is not None:
        resource["encounter"] = _ref("Encounter", encounter)
    return resource


def write_film(record: PatientRecord, film: Film, at: Clock, png_dir: Path, out: Path) -> Path:
    """Wrap the real PNG film as DICOM: 16 bits stored (the 8-bit values times 257, exact) and
    no display window, so the pipeline decodes it exactly as ``dipro-fhir regions`` decodes
    the PNG (issue 23)."""
    pixels = np.asarray(Image.open(png_dir / f"{film.image_id}.png").convert("L"), dtype=np.float64)
    study, series, instance = _uids(film)
    ds = to_dicom(
        pixels / 255.0,
        patient_id=f"hann-{record.pid}",
        patient_name=f"Hannover^{record.pid}",
        birth_date=None,
        sex={"m": "M", "f": "F"}.get(record.sex, "O"),
        study_uid=study,
        series_uid=series,
        instance_uid=instance,
        acquired=at(film.day, "film"),
        modality=film.modality if film.modality in ("CR", "DX") else "CR",
        view_position=film.view if film.view in ("AP", "PA") else "AP",
        bits_stored=16,
        window=False,
    )
    ds.Manufacturer = "Hannover Medical School (COVID-19 Image Repository, CC BY 3.0)"
    return write_dicom(ds, out / "dicom" / study / f"{instance}.dcm")


def site_concept_map() -> dict[str, Any]:
    """The site's decision: blood-gas pCO2 (specimen not stated) feeds DiPro's pCO2."""
    return {
        "resourceType": "ConceptMap",
        "id": "hannover-blood-gas",
        "url": f"{IDS}/ConceptMap/blood-gas",
        "version": "1",
        "name": "HannoverBloodGas",
        "status": "active",
        "description": "pCO2 of the Hannover blood gases, specimen not stated, as DiPro's pCO2.",
        "group": [
            {
                "source": LOINC,
                "target": "https://dipro-fhir.example.org/CodeSystem/dipro-variable",
                "element": [
                    {
                        "code": "11557-6",
                        "display": "Carbon dioxide [Partial pressure] in Blood",
                        "target": [
                            {
                                "code": "partial_pressure_co2",
                                "equivalence": "narrower",
                                "comment": "DiPro's item is arterial; the specimen is not recorded "
                                "(ICU blood gases, mostly arterial). Accepted by the site.",
                            }
                        ],
                    }
                ],
            }
        ],
    }


def _icu_location() -> dict[str, Any]:
    return {
        "resourceType": "Location",
        "id": "hann-icu",
        "status": "active",
        "name": "Intensive care unit",
        "type": [_concept(ROLE_CODE, "ICU", "Intensive care unit")],
    }


def _write_ndjson(path: Path, resources: Sequence[dict[str, Any]]) -> None:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in resources), encoding="utf-8"
    )


def build(data: Path, out: Path, anchor: date) -> dict[str, Any]:
    """Write the cohort into ``out`` (created; files of the same names are replaced)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "conceptmaps").mkdir(exist_ok=True)
    by_type: dict[str, list[dict[str, Any]]] = {
        t: [] for t in ("Patient", "Encounter", "Observation", "ImagingStudy")
    }
    films = 0
    for record in read_records(data):
        at = clock_for(record, anchor)
        by_type["Patient"].append(patient_resource(record, at))
        by_type["Encounter"].extend(encounters(record, at))
        by_type["Observation"].extend(observations(record, at))
        for film in record.films:
            by_type["ImagingStudy"].append(imaging_study(record, film, at))
            write_film(record, film, at, data / "png", out)
            films += 1
    for resource_type, resources in by_type.items():
        _write_ndjson(out / f"{resource_type}.ndjson", resources)
    _write_ndjson(out / "Location.ndjson", [_icu_location()])
    (out / "conceptmaps" / "hannover-blood-gas.json").write_text(
        json.dumps(site_concept_map(), indent=2)
    )
    as_of = datetime.combine(anchor, time(12), tzinfo=SITE_TZ)
    summary = {
        "patients": len(by_type["Patient"]),
        "films": films,
        "resources": {t: len(r) for t, r in by_type.items()},
        "as_of": as_of.isoformat(),
        "site_timezone": str(SITE_TZ),
        "source": ATTRIBUTION,
    }
    (out / "cohort.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--data`` (the CSV and PNG folder), ``--out``, ``--anchor``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "hannover")
    parser.add_argument("--anchor", type=date.fromisoformat, default=date(2020, 4, 20))
    args = parser.parse_args(argv)
    summary = build(args.data, args.out, args.anchor)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
