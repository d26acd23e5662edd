"""The HL7 R4 ImagingStudy example's UIDs, time, encounter and WADO-RS Endpoint are read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from dipro_fhir.core.timeline import ResourceRef
from dipro_fhir.mapping.imaging_study import read_imaging_study, study_uid, wado_rs_address

DATA = Path(__file__).parents[2] / "data" / "fhir"


def _load(name: str) -> dict[str, object]:
    return json.loads((DATA / name).read_text())


def test_hl7_imaging_study_example_uids_and_endpoint_are_read() -> None:
    ref = read_imaging_study(_load("ImagingStudy-example-xr.json"))
    assert ref.resource == ResourceRef("ImagingStudy", "example-xr", None)
    assert ref.study_uid == "2.16.124.113543.6003.1154777499.30246.19789.3503430046"
    assert ref.started == datetime(2017, 1, 1, 8, 1, 20, tzinfo=UTC)
    assert ref.encounter_id == "example"
    assert [s.uid for s in ref.series] == [
        "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1"
    ]
    assert ref.series[0].modality == "DX"
    assert ref.series[0].instance_uids == (
        "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.1",
        "2.16.124.113543.6003.1154777499.30246.19789.3503430045.1.2",
    )
    assert ref.endpoints == ("Endpoint/example-wadors",)
    endpoint = _load("Endpoint-example-wadors.json")
    assert wado_rs_address(endpoint) == "https://pacs.hospital.org/wado-rs"


def test_study_without_dicom_uid_or_with_other_endpoint_kinds() -> None:
    assert study_uid({"resourceType": "ImagingStudy", "identifier": [{"value": "x"}]}) is None
    other = {
        "connectionType": {"code": "hl7-fhir-rest"},
        "address": "https://x",
        "status": "active",
    }
    assert wado_rs_address(other) is None
    off = {"connectionType": {"code": "dicom-wado-rs"}, "address": "https://x", "status": "off"}
    assert wado_rs_address(off) is None


def _study(*identifiers: dict[str, str]) -> dict[str, object]:
    return {"resourceType": "ImagingStudy", "identifier": list(identifiers)}


def test_study_uid_from_dicom_uid_and_rfc3986_systems() -> None:
    uid = "1.2.840.113619.2.55.3.604688119.969.1268071029.320"
    # FHIR R4 ImagingStudy notes: system urn:dicom:uid, value urn:oid:<uid>.
    assert study_uid(_study({"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"})) == uid
    # Synthea and others: system urn:ietf:rfc:3986 with the same urn:oid: value.
    assert study_uid(_study({"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{uid}"})) == uid
    # urn:dicom:uid wins over an rfc3986 identifier listed first.
    both = _study(
        {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3"},
        {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"},
    )
    assert study_uid(both) == uid


def test_rfc3986_identifiers_that_are_not_oids_or_not_uids_are_ignored() -> None:
    for value in (
        "urn:uuid:9a1d6a1e-7c8b-4b6e-9d0b-1f2e3d4c5b6a",
        "https://pacs/x",
        "urn:oid:1.02",
    ):
        assert study_uid(_study({"system": "urn:ietf:rfc:3986", "value": value})) is None
    assert study_uid(_study({"system": "urn:dicom:uid", "value": "urn:oid:" + "1." * 40})) is None


def _with_series(*series: dict[str, object]) -> dict[str, object]:
    return {
        "resourceType": "ImagingStudy",
        "id": "s",
        "series": [{"uid": "1.2"} | s for s in series],
    }


def test_a_study_that_says_it_is_no_chest_radiograph_is_told_apart() -> None:
    # The HL7 example is a wrist film (DX, bodySite "Wrist Joint"); Synthea's arm and ankle
    # films name SNOMED body structures; a CT of the chest is no radiograph.
    assert read_imaging_study(_load("ImagingStudy-example-xr.json")).declared_not_chest_radiograph()
    dx = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "DX"}
    arm = {"system": "http://snomed.info/sct", "code": "40983000", "display": "Arm"}
    thorax = {
        "system": "http://snomed.info/sct",
        "code": "51185008",
        "display": "Thoracic structure",
    }
    ct = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}
    cases = {
        "arm": (_with_series({"modality": dx, "bodySite": arm}), True),
        "thorax": (_with_series({"modality": dx, "bodySite": thorax}), False),
        "chest by text only": (_with_series({"bodySite": {"display": "Chest"}}), False),
        "arm and chest series": (
            _with_series({"bodySite": arm}, {"uid": "1.3", "bodySite": thorax}),
            False,
        ),
        "ct only": (_with_series({"modality": ct}), True),
        "says nothing": (_with_series({}), False),
        "no series": ({"resourceType": "ImagingStudy", "id": "s"}, False),
    }
    for name, (study, expected) in cases.items():
        assert read_imaging_study(study).declared_not_chest_radiograph() is expected, name
