"""Synthetic FHIR resources: valid R4, and consistent with the ground truth."""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta
from typing import Any

import numpy as np

from dipro.vocab import FINDINGS, PROGRESSION_CLASSES, PROGRESSION_IGNORE
from dipro_fhir.core.timeline import PatientId
from dipro_fhir.fhir.resources import validate_resource
from dipro_fhir.mapping.code_maps import default_code_maps
from dipro_fhir.mapping.timeline import build_timeline
from dipro_fhir.mapping.units import to_canonical
from dipro_fhir.mapping.variables import LOINC_SYSTEM, SPECS_BY_NAME
from dipro_fhir.synth import SyntheticPatient, generate_cohort
from dipro_fhir.synth.fhir import (
    FINDING_SYSTEM,
    PROGRESSION_SYSTEM,
    to_endpoint,
    to_resources,
    transaction_bundles,
)
from tests.unit.synth.conftest import START


def _values(resource: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(variable, value, unit) of each valueQuantity in an Observation, components included."""
    elements = resource.get("component", [resource])
    out = []
    for el in elements:
        if "valueQuantity" in el:
            q = el["valueQuantity"]
            code = el["code"]["coding"][0]["code"]
            variable = default_code_maps().variable_of(LOINC_SYSTEM, code)
            assert variable is not None
            out.append((variable.spec.name, q["value"], q["code"]))
    return out


def test_every_resource_and_bundle_validates_as_r4(cohort: list[SyntheticPatient]) -> None:
    resources = [to_endpoint("http://127.0.0.1:8042/dicom-web")]
    for p in cohort[:4]:
        resources += list(to_resources(p))
    for res in resources:
        validate_resource(res)
    types = Counter(r["resourceType"] for r in resources)
    assert set(types) == {
        "Endpoint", "Patient", "Encounter", "Observation", "ImagingStudy", "DiagnosticReport"
    }  # fmt: skip
    for bundle in itertools.islice(transaction_bundles(resources, batch_size=200), 3):
        validate_resource(bundle)
        assert all(e["request"]["method"] == "PUT" for e in bundle["entry"])


def test_truth_is_the_converted_value_of_every_usable_observation(
    cohort: list[SyntheticPatient],
) -> None:
    for p in cohort[:10]:
        expected = []
        for res in to_resources(p):
            if res["resourceType"] != "Observation" or res["status"] not in ("final", "amended"):
                continue
            for variable, value, unit in _values(res):
                canonical = to_canonical(value, unit, SPECS_BY_NAME[variable])
                expected.append((res["id"], variable, canonical))
        truth = [(v.observation_id, v.variable, v.value) for v in p.truth.values]
        assert sorted(t[:2] for t in truth) == sorted(e[:2] for e in expected)
        got = {t[:2]: t[2] for t in truth}
        for obs_id, variable, canonical in expected:
            assert np.isclose(got[obs_id, variable], canonical, rtol=1e-9), (obs_id, variable)


def test_realistic_shares_of_units_absent_values_and_voided_statuses(
    cohort: list[SyntheticPatient],
) -> None:
    observations = [o for p in cohort for o in p.observations]
    measurements = [m for o in observations for m in o.measurements if m.value is not None]
    other_unit = [m.unit != SPECS_BY_NAME[m.variable].canonical_unit for m in measurements]
    assert 0.04 < np.mean(other_unit) < 0.2  # 15% of the variables that have another unit
    assert {m.unit for m in measurements} >= {"[degF]", "[lb_av]", "mmol/L", "%"}
    absent = np.mean([o.absent_reason is not None for o in observations])
    assert 0.01 < absent < 0.03
    statuses = Counter(o.status for o in observations)
    assert statuses["cancelled"] > 0
    assert statuses["entered-in-error"] > 0
    assert sum(o.panel_loinc == "85354-9" for o in observations) > 100


def test_mapped_timeline_equals_the_truth_grid(cohort: list[SyntheticPatient]) -> None:
    for p in cohort[:5]:
        resources = list(to_resources(p))
        observations = [r for r in resources if r["resourceType"] == "Observation"]
        as_of = p.stay.admitted + timedelta(hours=50, minutes=7)
        timeline = build_timeline(
            PatientId(p.patient_id), None, as_of, resources[0], observations, []
        )
        values, mask = p.truth.ehr_grid(as_of, 48)
        assert mask.sum() > 100
        np.testing.assert_array_equal(timeline.ehr_mask, mask)
        np.testing.assert_allclose(timeline.ehr_values[mask], values[mask], rtol=1e-6)


def test_report_codes_give_back_the_progression_labels(cohort: list[SyntheticPatient]) -> None:
    for p in cohort[:10]:
        reports = [r for r in to_resources(p) if r["resourceType"] == "DiagnosticReport"]
        assert len(reports) == len(p.studies)
        for report, pair in zip(reports[1:], p.truth.pairs, strict=True):
            labels = [PROGRESSION_IGNORE] * len(FINDINGS)
            for obs in report["contained"]:
                (finding,) = [
                    c["code"] for c in obs["code"]["coding"] if c["system"] == FINDING_SYSTEM
                ]
                (value,) = obs["valueCodeableConcept"]["coding"]
                assert value["system"] == PROGRESSION_SYSTEM
                labels[FINDINGS.index(finding)] = PROGRESSION_CLASSES.index(value["code"])
            assert tuple(labels) == pair.labels
            assert [r["reference"] for r in report["result"]] == [
                f"#{c['id']}" for c in report["contained"]
            ]


def test_outcome_labels_come_from_patient_and_encounter(cohort: list[SyntheticPatient]) -> None:
    for p in cohort:
        patient, encounter = list(itertools.islice(to_resources(p), 2))
        assert ("deceasedDateTime" in patient) == bool(p.truth.mortality)
        disposition = encounter["hospitalization"]["dischargeDisposition"]["coding"][0]["code"]
        assert (disposition == "exp") == bool(p.truth.mortality)
        assert encounter["status"] == "finished"
        assert encounter["period"]["end"] > encounter["period"]["start"]


def test_stays_open_at_the_reference_time_are_in_progress_without_future_data() -> None:
    reference = START + timedelta(days=6)
    patients = list(generate_cohort(30, seed=9, start=START, reference_time=reference))
    open_ = [p for p in patients if not p.stay.finished]
    assert open_
    assert any(p.stay.finished for p in patients)
    for p in open_:
        patient, encounter, *_ = to_resources(p)
        assert encounter["status"] == "in-progress"
        assert "end" not in encounter["period"]
        assert "hospitalization" not in encounter
        assert "deceasedDateTime" not in patient
        assert not p.truth.outcome_known
        assert all(o.effective < reference and o.issued <= reference for o in p.observations)
        assert all(s.started < reference for s in p.studies)


def test_imaging_study_matches_dicom_identifiers(cohort: list[SyntheticPatient]) -> None:
    p = cohort[0]
    studies = [r for r in to_resources(p) if r["resourceType"] == "ImagingStudy"]
    for res, study in zip(studies, p.studies, strict=True):
        assert res["identifier"][0] == {
            "system": "urn:dicom:uid",
            "value": f"urn:oid:{study.study_uid}",
        }
        assert res["numberOfInstances"] == len(study.images)
        assert [s["instance"][0]["uid"] for s in res["series"]] == [
            i.instance_uid for i in study.images
        ]
        assert res["endpoint"] == [{"reference": "Endpoint/synth-dicomweb"}]
