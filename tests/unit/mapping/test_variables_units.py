"""The variable map is consistent, and unit conversion round-trips and keeps order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dipro.vocab import VARIABLES
from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.mapping.code_maps import loinc_codes
from dipro_fhir.mapping.units import UnitError, convert, normalize_unit
from dipro_fhir.mapping.variables import (
    VARIABLE_MAP_VERSION,
    VARIABLE_SPECS,
    VariableSpec,
    spec_for,
)


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC mod-10 check digit (LOINC Users' Guide, appendix on check digits)."""
    number, check = code.split("-")
    reversed_digits = number[::-1]
    odd = reversed_digits[0::2][::-1]
    even = reversed_digits[1::2][::-1]
    total = sum(int(c) for c in even + str(int(odd) * 2))
    return str((10 - total % 10) % 10) == check


def test_map_covers_the_38_variables_in_vocab_order() -> None:
    assert tuple(s.name for s in VARIABLE_SPECS) == VARIABLES
    assert VARIABLE_MAP_VERSION.count(".") == 2


def test_loinc_codes_are_unique_and_have_valid_check_digits() -> None:
    codes = [c for s in VARIABLE_SPECS for c in loinc_codes(s.name)]
    assert all(loinc_codes(s.name) for s in VARIABLE_SPECS)  # every variable has a code
    assert len(codes) == len(set(codes))
    assert [c for c in codes if not loinc_check_digit_ok(c)] == []


@pytest.mark.parametrize("spec", VARIABLE_SPECS, ids=lambda s: s.name)
def test_each_spec_is_consistent(spec: VariableSpec) -> None:
    assert spec is spec_for(spec.name)
    low, high = spec.valid_range
    assert low < high
    assert low <= spec.normal <= high
    assert spec.accepted_units[0] == spec.canonical_unit
    units = spec.accepted_units
    assert len(units) == len(set(units))
    for unit in units:  # the canonical unit is reachable from every accepted unit
        there = convert(1.0, unit, spec.canonical_unit, spec.name)
        assert convert(there, spec.canonical_unit, unit, spec.name) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("value", "src", "dst", "variable", "expected"),
    [
        (185, "[lb_av]", "kg", "weight", 83.91458845),
        (16, "[oz_av]", "kg", "weight", 0.45359237),
        (500, "g", "kg", "weight", 0.5),
        (10, "[in_i]", "cm", "height", 25.4),
        (1.8, "m", "cm", "height", 180.0),
        (98.6, "[degF]", "Cel", "temperature", 37.0),
        (310.15, "K", "Cel", "temperature", 37.0),
        (5.0, "mmol/L", "mg/dL", "glucose", 90.08),
        (10.0, "mmol/L", "mg/dL", "blood_urea_nitrogen", 28.0),
        (88.42, "umol/L", "mg/dL", "creatinine", 1.0),
        (1.0, "mmol/L", "mg/dL", "magnesium", 2.43),
        (120, "g/L", "g/dL", "hemoglobin", 12.0),
        (21, "%", "1", "fraction_inspired_oxygen", 0.21),
        (0.95, "1", "%", "oxygen_saturation", 95.0),
        (7.2, "10*9/L", "10*3/uL", "white_blood_cell_count", 7.2),
        (250, "K/uL", "10*3/uL", "platelets", 250.0),
        (60, "bpm", "/min", "heart_rate", 60.0),
        (60, "{beats}/min", "/min", "heart_rate", 60.0),
        (14, "ng/L", "ng/mL", "troponin_t", 0.014),
        (1.2, "{INR}", "1", "prothrombin_time_inr", 1.2),
    ],
)
def test_conversion_gives_the_exact_number(
    value: float, src: str, dst: str, variable: str, expected: float
) -> None:
    assert convert(value, src, dst, variable) == pytest.approx(expected, rel=1e-9)


def test_unknown_unit_and_unknown_variable_raise_unit_error() -> None:
    with pytest.raises(UnitError):
        convert(1.0, "furlong", "kg", "weight")
    with pytest.raises(UnitError):
        convert(1.0, "kg", "kg", "shoe_size")
    with pytest.raises(UnitError):
        convert(1.0, "mmol/L", "mg/dL", "weight")  # mass <-> substance needs the analyte
    assert issubclass(UnitError, DiproFhirError)


def test_text_aliases_resolve_to_ucum_codes() -> None:
    assert normalize_unit(" lbs ") == "[lb_av]"
    assert normalize_unit("mmHg") == "mm[Hg]"
    assert normalize_unit("mg/dl") == "mg/dL"
    assert normalize_unit("mg/dL") == "mg/dL"


unit_pairs = st.sampled_from(
    [(s.name, u, v) for s in VARIABLE_SPECS for u in s.accepted_units for v in s.accepted_units]
)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@given(pair=unit_pairs, value=finite)
def test_conversion_round_trips(pair: tuple[str, str, str], value: float) -> None:
    variable, src, dst = pair
    back = convert(convert(value, src, dst, variable), dst, src, variable)
    assert back == pytest.approx(value, rel=1e-9, abs=1e-9)


@given(pair=unit_pairs, a=finite, b=finite)
def test_conversion_is_monotonic_increasing(pair: tuple[str, str, str], a: float, b: float) -> None:
    variable, src, dst = pair
    lo, hi = sorted((a, b))
    assert convert(lo, src, dst, variable) <= convert(hi, src, dst, variable)
