"""The kinds of bad input of the corpus (listed in README.md), one function each.

A kind gets the cohort's files and a patient of its own; it damages that patient's data (or
adds an item of no patient) and returns the :class:`Damage`: whom it belongs to, which
problem codes (``data_problems.code`` or ``patient_failures.reason``) may record it, and
whether the patient is still scored.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pydicom
from bad_inputs_corpus import AS_OF, Damage, _Files, _nested, _observation  # see corpus.load
from pydicom.uid import ExplicitVRLittleEndian

Apply = Callable[[_Files, str], Damage]


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    needs_image: bool
    apply: Apply


KINDS: list[Kind] = []


def kind(name: str, *, image: bool = False) -> Callable[[Apply], Apply]:
    def register(fn: Apply) -> Apply:
        KINDS.append(Kind(name, image, fn))
        return fn

    return register


def _mine(name: str, patient: str, *codes: str, scored: bool = True) -> Damage:
    return Damage(name, patient, frozenset(codes), scored)


def _nobody(name: str, *codes: str) -> Damage:
    return Damage(name, None, frozenset(codes), True)


# -- NDJSON lines of no patient ---------------------------------------------------------------


@kind("malformed-json-line")
def _malformed(f: _Files, p: str) -> Damage:
    f.append_raw("Observation", '{"resourceType": "Observation", "id": "cut-')
    return _nobody("malformed-json-line", "invalid-json")


@kind("deep-nesting-100000")
def _deep(f: _Files, p: str) -> Damage:
    f.append_raw("Observation", "[" * 100_000 + "]" * 100_000)  # RecursionError in json
    return _nobody("deep-nesting-100000", "json-too-deep")


@kind("deep-nesting-over-limit")
def _deep_limit(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "deep-obs", extension=[_nested(300)]))
    return _nobody("deep-nesting-over-limit", "json-too-deep")


@kind("oversized-resource")
def _oversized(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "huge-obs", note=[{"text": "x" * 400_000}]))
    return _nobody("oversized-resource", "resource-too-large")


@kind("json-array-line")
def _array(f: _Files, p: str) -> Damage:
    f.append_raw("Observation", "[1, 2, 3]")
    return _nobody("json-array-line", "invalid-resource")


@kind("wrong-resource-type")
def _wrong_type(f: _Files, p: str) -> Damage:
    f.append("Observation", {"resourceType": "Condition", "id": "c1"})
    return _nobody("wrong-resource-type", "invalid-resource")


@kind("observation-without-subject")
def _no_subject(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "orphan-obs", subject=None))
    return _nobody("observation-without-subject", "no-subject")


@kind("unresolved-urn-uuid")
def _urn(f: _Files, p: str) -> Damage:
    ref = {"reference": "urn:uuid:7d1f0c52-0000-4000-8000-000000000000"}
    f.append("Observation", _observation(p, "urn-obs", subject=ref))
    return _nobody("unresolved-urn-uuid", "unresolved-reference")


def _encounter(patient_ref: str, eid: str, **period: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": patient_ref},
        "period": period or {"start": (AS_OF - timedelta(days=1)).isoformat()},
    }


@kind("patient-id-too-long")
def _long_id(f: _Files, p: str) -> Damage:
    f.append("Encounter", _encounter("Patient/" + "a" * 65, "enc-long"))
    return _nobody("patient-id-too-long", "invalid-id")


@kind("patient-id-path-characters")
def _path_id(f: _Files, p: str) -> Damage:
    f.append("Encounter", _encounter("Patient/..%2Fmetadata?x=1", "enc-path"))
    return _nobody("patient-id-path-characters", "invalid-id")


@kind("patient-id-with-space")
def _space_id(f: _Files, p: str) -> Damage:
    f.append("Encounter", _encounter("Patient/john doe", "enc-space"))
    return _nobody("patient-id-with-space", "invalid-id")


@kind("encounter-id-invalid")
def _bad_encounter_id(f: _Files, p: str) -> Damage:
    f.append("Encounter", _encounter("Patient/ghost-1", "enc id/with*chars"))
    return _nobody("encounter-id-invalid", "invalid-id")


# -- one patient's FHIR data --------------------------------------------------------------------


@kind("patient-invalid")
def _patient_invalid(f: _Files, p: str) -> Damage:
    f.rewrite("Patient", lambda r: {**r, "gender": 42} if r["id"] == p else r)
    return _mine("patient-invalid", p, "invalid-resource", scored=False)


@kind("patient-missing")
def _patient_missing(f: _Files, p: str) -> Damage:
    f.rewrite("Patient", lambda r: None if r["id"] == p else r)
    return _mine("patient-missing", p, "not-found", scored=False)


@kind("patient-birthdate-unparsable")
def _birth(f: _Files, p: str) -> Damage:
    f.rewrite("Patient", lambda r: {**r, "birthDate": "sometime"} if r["id"] == p else r)
    return _mine("patient-birthdate-unparsable", p, "invalid-resource", scored=False)


@kind("value-not-a-number")
def _nan_value(f: _Files, p: str) -> Damage:
    qty = {"value": "eighty", "unit": "/min"}
    f.append("Observation", _observation(p, "bad-value", valueQuantity=qty))
    return _mine("value-not-a-number", p, "invalid-resource")


@kind("unknown-unit")
def _unknown_unit(f: _Files, p: str) -> Damage:
    qty = {"value": 80, "unit": "furlong/fortnight", "code": "furlong/fortnight"}
    f.append("Observation", _observation(p, "odd-unit", valueQuantity=qty))
    return _mine("unknown-unit", p, "unknown-unit")


@kind("unit-mismatch")
def _unit_mismatch(f: _Files, p: str) -> Damage:
    qty = {"value": 37, "unit": "Cel", "system": "http://unitsofmeasure.org", "code": "Cel"}
    f.append("Observation", _observation(p, "hr-in-celsius", valueQuantity=qty))
    return _mine("unit-mismatch", p, "unknown-unit", "unit-mismatch", "incompatible-unit")


@kind("out-of-range-value")
def _out_of_range(f: _Files, p: str) -> Damage:
    qty = {"value": 9000, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    f.append("Observation", _observation(p, "hr-9000", valueQuantity=qty))
    return _mine("out-of-range-value", p, "out-of-range")


@kind("missing-effective-time")
def _no_time(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "no-time", effectiveDateTime=None))
    return _mine("missing-effective-time", p, "missing-time")


@kind("unparsable-effective-time")
def _bad_time(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "bad-time", effectiveDateTime="yesterday"))
    return _mine("unparsable-effective-time", p, "missing-time", "invalid-resource")


@kind("period-end-before-start")
def _backwards(f: _Files, p: str) -> Damage:
    period = {
        "start": (AS_OF - timedelta(hours=2)).isoformat(),
        "end": (AS_OF - timedelta(hours=5)).isoformat(),
    }
    obs = _observation(p, "backwards", effectiveDateTime=None, effectivePeriod=period)
    f.append("Observation", obs)
    return _mine("period-end-before-start", p, "invalid-period")


@kind("observation-id-path-characters")
def _obs_path_id(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "../../metadata"))
    return _mine("observation-id-path-characters", p, "invalid-resource")


@kind("observation-id-too-long")
def _obs_long_id(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "o" * 300))
    return _mine("observation-id-too-long", p, "invalid-resource")


@kind("duplicate-observation-id")
def _dup_obs(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "dup-obs"))
    qty = {"value": 95, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    f.append("Observation", _observation(p, "dup-obs", valueQuantity=qty))
    return _mine("duplicate-observation-id", p, "duplicate-id")


@kind("duplicate-patient-id")
def _dup_patient(f: _Files, p: str) -> Damage:
    twin = next(r for r in f.lines("Patient") if r["id"] == p)
    f.append("Patient", {**twin, "birthDate": "1900-01-01"})
    return _mine("duplicate-patient-id", p, "duplicate-id")


@kind("birthdate-year-0001")
def _birth_0001(f: _Files, p: str) -> Damage:
    f.rewrite("Patient", lambda r: {**r, "birthDate": "0001-01-01"} if r["id"] == p else r)
    return _mine("birthdate-year-0001", p, "implausible-birth-date")


@kind("observation-effective-year-9999")
def _year_9999(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, f"{p}-y9999", effectiveDateTime="9999-12-31T23:59:59Z"))
    return _mine("observation-effective-year-9999", p, "implausible-time")


@kind("observation-id-under-two-patients")
def _shared_id(f: _Files, p: str) -> Damage:
    f.append("Observation", _observation(p, "shared-obs"))
    f.append("Observation", _observation("ghost-2", "shared-obs"))  # no Patient, no cohort
    return _mine("observation-id-under-two-patients", p, "id-under-two-patients")


@kind("encounter-end-before-start")
def _enc_backwards(f: _Files, p: str) -> Damage:
    period = {"start": (AS_OF - timedelta(days=1)).isoformat(), "end": "2020-01-01T00:00:00Z"}
    f.append("Encounter", _encounter(f"Patient/{p}", f"{p}-enc-backwards", **period))
    return _mine("encounter-end-before-start", p, "invalid-period")


@kind("imaging-study-without-uid")
def _no_uid(f: _Files, p: str) -> Damage:
    study = {
        "resourceType": "ImagingStudy",
        "id": f"{p}-no-uid",
        "status": "available",
        "subject": {"reference": f"Patient/{p}"},
        "started": (AS_OF - timedelta(hours=4)).isoformat(),
        "meta": {"lastUpdated": (AS_OF - timedelta(hours=4)).isoformat()},
    }
    f.append("ImagingStudy", study)
    return _mine("imaging-study-without-uid", p, "no-study-uid")


@kind("imaging-study-not-on-pacs")
def _not_on_pacs(f: _Files, p: str) -> Damage:
    study = {
        "resourceType": "ImagingStudy",
        "id": f"{p}-gone",
        "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:2.25.1234567890"}],
        "subject": {"reference": f"Patient/{p}"},
        "started": (AS_OF - timedelta(hours=4)).isoformat(),
        "meta": {"lastUpdated": (AS_OF - timedelta(hours=4)).isoformat()},
    }
    f.append("ImagingStudy", study)
    return _mine("imaging-study-not-on-pacs", p, "image-missing")


@kind("arm-radiograph-study")
def _arm(f: _Files, p: str) -> Damage:
    arm = {"system": "http://snomed.info/sct", "code": "40983000", "display": "Arm"}
    dx = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX"}
    study = {
        "resourceType": "ImagingStudy",
        "id": f"{p}-arm",
        "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:2.25.1234567891"}],
        "subject": {"reference": f"Patient/{p}"},
        "started": (AS_OF - timedelta(hours=5)).isoformat(),
        "series": [{"uid": "2.25.1234567892", "modality": dx, "bodySite": arm}],
    }
    f.append("ImagingStudy", study)  # not on the PACS either: a request would say so
    return _mine("arm-radiograph-study", p, "not-chest-radiograph")


# -- one patient's DICOM objects ----------------------------------------------------------------


def _edit(f: _Files, p: str, change: Callable[[pydicom.Dataset], None]) -> None:
    path = f.newest_image(p)
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path, enforce_file_format=True)


@kind("truncated-dicom", image=True)
def _truncated(f: _Files, p: str) -> Damage:
    path = f.newest_image(p)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4000])
    return _mine("truncated-dicom", p, "corrupt-dicom")


@kind("not-dicom-at-all", image=True)
def _garbage(f: _Files, p: str) -> Damage:
    f.newest_image(p).write_bytes(random.Random(1).randbytes(5000))
    return _mine("not-dicom-at-all", p, "image-missing", "no-frontal-image")


@kind("non-image-dicom", image=True)
def _no_pixels(f: _Files, p: str) -> Damage:
    _edit(f, p, lambda ds: delattr(ds, "PixelData"))
    return _mine("non-image-dicom", p, "corrupt-dicom")


@kind("structured-report-modality", image=True)
def _sr(f: _Files, p: str) -> Damage:
    _edit(f, p, lambda ds: setattr(ds, "Modality", "SR"))
    return _mine("structured-report-modality", p, "no-frontal-image")


@kind("palette-color", image=True)
def _palette(f: _Files, p: str) -> Damage:
    _edit(f, p, lambda ds: setattr(ds, "PhotometricInterpretation", "PALETTE COLOR"))
    return _mine("palette-color", p, "corrupt-dicom")


@kind("rgb-image", image=True)
def _rgb(f: _Files, p: str) -> Damage:
    def to_rgb(ds: pydicom.Dataset) -> None:
        rgb = np.zeros((int(ds.Rows), int(ds.Columns), 3), dtype=np.uint8)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = rgb.tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    _edit(f, p, to_rgb)
    return _mine("rgb-image", p, "corrupt-dicom")


@kind("too-many-pixels", image=True)
def _big(f: _Files, p: str) -> Damage:
    def enlarge(ds: pydicom.Dataset) -> None:
        ds.Rows, ds.Columns = 220, 220  # 48,400 pixels > the corpus limit of 40,000
        ds.PixelData = np.full((220, 220), 900, dtype=np.uint16).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    _edit(f, p, enlarge)
    return _mine("too-many-pixels", p, "image-too-large")


@kind("frames-over-pixel-limit", image=True)
def _frames(f: _Files, p: str) -> Damage:
    def multiply(ds: pydicom.Dataset) -> None:
        ds.Rows, ds.Columns, ds.NumberOfFrames = 120, 120, 3  # 14,400 a frame, 43,200 in all
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelData = np.full((3, 120, 120), 900, dtype=np.uint16).tobytes()  # 86,400 bytes
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    _edit(f, p, multiply)
    return _mine("frames-over-pixel-limit", p, "image-too-large")


@kind("dicom-patient-id-of-another-patient", image=True)
def _other_patient(f: _Files, p: str) -> Damage:
    _edit(f, p, lambda ds: setattr(ds, "PatientID", "someone-else"))
    return _mine("dicom-patient-id-of-another-patient", p, "patient-mismatch")


@kind("too-many-pixel-bytes", image=True)
def _heavy(f: _Files, p: str) -> Damage:
    def pad(ds: pydicom.Dataset) -> None:
        ds.PixelData = bytes(ds.PixelData) + bytes(120_000)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    _edit(f, p, pad)
    return _mine("too-many-pixel-bytes", p, "image-too-large")


@kind("pixel-data-short", image=True)
def _short(f: _Files, p: str) -> Damage:
    def cut(ds: pydicom.Dataset) -> None:
        ds.PixelData = bytes(ds.PixelData)[:1000]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian

    _edit(f, p, cut)
    return _mine("pixel-data-short", p, "corrupt-dicom")


@kind("missing-acquisition-time", image=True)
def _no_date(f: _Files, p: str) -> Damage:
    def undate(ds: pydicom.Dataset) -> None:
        for prefix in ("Acquisition", "Content", "Series", "Study"):
            for suffix in ("Date", "Time"):
                if f"{prefix}{suffix}" in ds:
                    delattr(ds, f"{prefix}{suffix}")
        if "AcquisitionDateTime" in ds:
            del ds.AcquisitionDateTime

    _edit(f, p, undate)
    return _mine("missing-acquisition-time", p, "missing-acquisition-time")


@kind("lateral-view-only", image=True)
def _lateral(f: _Files, p: str) -> Damage:
    def lateral(ds: pydicom.Dataset) -> None:
        ds.ViewPosition = "LL"
        ds.SeriesDescription = "CHEST LAT"

    _edit(f, p, lateral)
    return _mine("lateral-view-only", p, "no-frontal-image")


@kind("duplicate-sop-instance", image=True)
def _dup_sop(f: _Files, p: str) -> Damage:
    path = f.newest_image(p)
    (path.parent / f"copy-{path.name}").write_bytes(path.read_bytes())
    return _mine("duplicate-sop-instance", p, "duplicate-sop-instance")


@kind("bits-allocated-invalid", image=True)
def _bits(f: _Files, p: str) -> Damage:
    _edit(f, p, lambda ds: setattr(ds, "BitsAllocated", 7))
    return _mine("bits-allocated-invalid", p, "corrupt-dicom")


def names() -> list[str]:
    """Every kind's name, in corpus order."""
    return [k.name for k in KINDS]
