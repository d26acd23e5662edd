"""The HL7 R4 ImagingStudy example's UIDs, time, encounter and WADO-RS Endpoint are read."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from dipro_fhir.mapping.imaging_study import read_imaging_study, study_uid, wado_rs_address
from dipro_fhir.timeline import ResourceRef

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
