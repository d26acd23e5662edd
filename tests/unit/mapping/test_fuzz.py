"""Messy JSON never makes the mapper raise anything but our own errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from dipro_fhir.core.timeline import PatientId
from dipro_fhir.mapping.demographics import encode_demographics
from dipro_fhir.mapping.observations import available_at, map_observation
from dipro_fhir.mapping.timeline import build_timeline

json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=3),
    max_leaves=10,
)  # fmt: skip

loinc = st.sampled_from(["8867-4", "85354-9", "8480-6", "9267-6", "3150-0", "2744-1", "x"])
coding = st.fixed_dictionaries(
    {}, optional={"system": st.sampled_from(["http://loinc.org", "urn:x"]) | json_value,
                  "code": loinc | json_value}
)  # fmt: skip
concept = st.fixed_dictionaries({}, optional={"coding": st.lists(coding, max_size=3) | json_value})
quantity = st.fixed_dictionaries(
    {}, optional={"value": st.floats() | st.integers() | json_value,
                  "code": st.sampled_from(["/min", "%", "mm[Hg]", "{score}", "kg"]) | json_value,
                  "system": st.just("http://unitsofmeasure.org") | json_value,
                  "unit": st.text(max_size=6), "comparator": st.sampled_from(["<", ">"])}
)  # fmt: skip
timestamp = st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01", "2026", "2026-02-30",
                             "2026-01-01T25:00:00Z", "x"]) | json_value  # fmt: skip
element = {
    "code": concept | json_value,
    "valueQuantity": quantity | json_value,
    "valueInteger": st.integers() | json_value,
    "valueCodeableConcept": concept | json_value,
    "dataAbsentReason": concept | json_value,
}
component = st.fixed_dictionaries({}, optional=element)
messy_observation = st.fixed_dictionaries(
    {"resourceType": st.just("Observation") | json_value},
    optional={
        **element,
        "id": st.text(max_size=5) | json_value,
        "status": st.sampled_from(["final", "cancelled", "amended"]) | json_value,
        "effectiveDateTime": timestamp,
        "effectivePeriod": st.fixed_dictionaries({}, optional={"start": timestamp,
                                                               "end": timestamp}) | json_value,
        "issued": timestamp,
        "meta": st.fixed_dictionaries({}, optional={"lastUpdated": timestamp,
                                                    "versionId": json_value}) | json_value,
        "component": st.lists(component, max_size=3) | json_value,
    },
)  # fmt: skip


@given(resource=messy_observation)
def test_mapper_never_raises_on_messy_observations(resource: dict[str, Any]) -> None:
    events, issues = map_observation(resource)
    available_at(resource)
    for e in events:
        assert e.effective.tzinfo is not None
        assert isinstance(e.value, float)
    assert all(isinstance(i.code, str) and i.code for i in issues)


@given(resource=json_value)
def test_mapper_never_raises_on_arbitrary_json(resource: Any) -> None:
    map_observation(resource)
    available_at(resource)


@given(
    patient=st.dictionaries(
        st.sampled_from(["gender", "birthDate", "extension", "communication", "maritalStatus",
                         "id", "resourceType"]), json_value, max_size=6),
    observations=st.lists(messy_observation, max_size=4),
)  # fmt: skip
def test_timeline_never_raises_on_messy_input(
    patient: dict[str, Any], observations: list[dict[str, Any]]
) -> None:
    as_of = datetime(2026, 1, 2, tzinfo=UTC)
    encode_demographics(patient, as_of, None, None)
    timeline = build_timeline(PatientId("p"), None, as_of, patient, observations, ())
    assert timeline.ehr_values.shape == (48, 38)
