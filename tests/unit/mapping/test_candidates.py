"""Candidate variables for unmapped codes: found by words, ruled out by units, value types,
specimens and qualifiers, ranked by unit (issue 23, item 6)."""

from __future__ import annotations

from dipro_fhir.mapping.candidates import ValueProfile, candidates, value_type

LOINC = "http://loinc.org"
LOCAL = "https://hospital.example.org/CodeSystem/chart"


def _values(*units: str, types: tuple[str, ...] = ("Quantity",)) -> ValueProfile:
    """Values seen in UCUM ``units`` (all of them UCUM) of the value ``types``."""
    return ValueProfile(
        units=tuple((u, 1) for u in units),
        ucum_units=frozenset(units),
        value_types=tuple((t, 1) for t in types),
    )


def _names(system: str, display: str, values: ValueProfile | None = None) -> list[str]:
    return [c.variable for c in candidates(system, display, values)]


def test_an_apgar_subscore_is_not_heart_rate() -> None:
    # The HL7 Apgar example: component 32407-9, a coded answer with an ordinal value.
    apgar = "1 minute Apgar Heart Rate"
    assert _names(LOINC, apgar, _values(types=("CodeableConcept",))) == []
    assert _names(LOINC, apgar) == []  # by its words alone too
    assert _names("http://snomed.info/sct", "Apgar heart rate score", _values("{score}")) == []
    assert _names(LOINC, "Heart rate", _values("/min")) == ["heart_rate"]


def test_a_unit_that_cannot_convert_rules_the_variable_out() -> None:
    mch = "Erythrocyte mean corpuscular hemoglobin [Entitic mass] by Automated count"
    assert _names(LOINC, mch, _values("pg")) == []
    egfr = "Glomerular filtration rate/1.73 sq M predicted [Volume Rate/Area] in Serum or Plasma"
    assert _names(LOINC, f"{egfr} by Creatinine-based formula (MDRD)", _values("mL/min")) == []
    assert _names(LOCAL, "Creatinine (serum)", _values("umol/L")) == ["creatinine"]
    assert _names(LOCAL, "Creatinine (serum)", _values("mL/min/{1.73_m2}")) == []


def test_a_blood_count_percentage_is_not_the_count() -> None:
    neutrophils = "Neutrophils/100 leukocytes in Blood by Automated count"
    assert _names(LOINC, neutrophils, _values("%")) == []
    assert _names(LOINC, neutrophils) == []  # the denominator of a ratio is no analyte
    wbc = "Leukocytes [#/volume] in Blood by Automated count"
    assert _names(LOINC, wbc, _values("10*3/uL")) == ["white_blood_cell_count"]


def test_a_local_unit_text_rules_nothing_out() -> None:
    not_ucum = ValueProfile(units=(("units", 1),), value_types=(("Quantity", 1),))
    assert _names(LOCAL, "pH", not_ucum) == ["ph"]


def test_a_urine_specimen_is_not_the_blood_variable() -> None:
    assert _names(LOINC, "pH of Urine by Test strip", _values("[pH]")) == []
    urine_glucose = "Glucose [Mass/volume] in Urine by Test strip"
    assert _names(LOINC, urine_glucose, _values("mg/dL")) == []
    assert _names(LOCAL, "Creatinine, Urine", _values("mg/dL")) == []
    blood_glucose = "Glucose [Mass/volume] in Venous blood"
    assert _names(LOINC, blood_glucose, _values("mg/dL")) == ["glucose"]


def test_values_the_mapper_cannot_read_rule_the_variable_out() -> None:
    assert _names(LOCAL, "Heart Rhythm", _values(types=("String",))) == []
    assert _names(LOCAL, "Heart Rate", _values(types=("String",))) == []
    foley_date = "Foley Catheter Insertion Date"
    assert _names(LOCAL, foley_date, _values(types=("DateTime",))) == []
    koh = "POTASSIUM HYDROXIDE PREPARATION"
    assert _names(LOCAL, koh, _values(types=("CodeableConcept",))) == []
    # A coded answer is how a GCS part is read, so it stays a candidate.
    gcs = _values(types=("CodeableConcept",))
    assert _names(LOCAL, "GCS - Eye Opening", gcs) == ["gcs_eye_opening"]
    # A panel has no value of its own: none of the variables its title names.
    vitals = "Vital signs, weight, height, head circumference, oxygen saturation and BMI panel"
    assert _names(LOINC, vitals, _values(types=("panel",))) == []


def test_an_alarm_threshold_is_not_the_measurement() -> None:
    assert _names(LOCAL, "Heart rate Alarm - High", _values("/min")) == []


def test_the_urine_routes_of_mimic_are_urine_output() -> None:
    for route in ("Foley", "Void", "Condom Cath", "Straight Cath", "Suprapubic"):
        assert _names(LOCAL, route, _values("mL")) == ["urine_output"]
    assert _names(LOCAL, "Void", _values("mg/dL")) == []


def test_the_canonical_unit_ranks_first() -> None:
    display = "FiO2 or O2 saturation"
    assert _names(LOCAL, display, _values("%")) == [
        "oxygen_saturation",
        "fraction_inspired_oxygen",
    ]
    assert _names(LOCAL, display, _values("1")) == [
        "fraction_inspired_oxygen",
        "oxygen_saturation",
    ]


def test_value_type_names_the_fhir_type_or_why_there_is_none() -> None:
    assert value_type({"valueQuantity": {"value": 1}}) == "Quantity"
    assert value_type({"valueDateTime": "2180-07-21"}) == "DateTime"
    assert value_type({"dataAbsentReason": {"text": "x"}}) == "absent"
    assert value_type({"hasMember": [{"reference": "Observation/a"}]}) == "panel"
    assert value_type({"code": {"text": "x"}}) == "none"
