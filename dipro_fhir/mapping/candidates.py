"""Candidate DiPro variables for a code no map knows, from its display, units and value types.

``dipro-fhir codes`` lists every Observation code a source holds; for an unmapped one it
suggests variables a person should check before adding the code to the site's ConceptMap.
A variable is *found* by the code's words:

* **LOINC component**: a LOINC display (the long common name, "Potassium [Moles/volume] in
  Blood") starts with the component (the analyte, before ``[``). When it equals the
  component of a code the shipped LOINC map already maps, the variable is a candidate.
* **display text**: the display contains a term of the variable (:data:`VARIABLE_TERMS`)
  as whole words ("Pulse rate" -> heart_rate, "HCO3 arterial" -> bicarbonate). In a LOINC
  display only the component's first part is searched: the analyte, not the method ("eGFR
  ... by Creatinine-based formula" is no creatinine) nor the denominator of a ratio
  ("Neutrophils/100 leukocytes" is no leukocyte count).

and is *not offered* when the code's Observations show that it measures something else
(:class:`ValueProfile`, what the ``codes`` command saw of their values):

* a UCUM unit was seen and none of the units seen converts to the variable's
  (:attr:`~dipro_fhir.mapping.variables.VariableSpec.accepted_units`): an Apgar "heart rate"
  in ``{score}``, an eGFR in ``mL/min/{1.73_m2}``, an MCH in ``pg``, a blood-count percentage
  for a count;
* values were seen and none is of a type the mapper reads for the variable
  (:mod:`dipro_fhir.mapping.observations`: ``valueQuantity``; ``valueInteger`` for unitless
  variables; ``valueCodeableConcept`` for the GCS parts): a rhythm as text, a catheter's
  insertion date, a culture result;
* the display names a specimen other than blood (urine, CSF, ...; urine output excepted), or
  says the value is no measurement of the variable (an alarm threshold, an Apgar subscore).

The rest are ranked: a component match over a display match, a more complete display match
over a partial one, the variable's canonical unit over another accepted one over no unit,
and values of a type the mapper reads. Suggestions only: nothing is mapped without a map.
Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Final, Literal

from dipro_fhir.mapping.code_maps import builtin_code_maps
from dipro_fhir.mapping.units import UCUM_SYSTEM, is_known_unit, normalize_unit, quantity_unit
from dipro_fhir.mapping.variables import LOINC_SYSTEM, SPECS_BY_NAME, VariableSpec

#: Words and phrases that name each variable in displays (lower case; whole-word match).
VARIABLE_TERMS: Final[Mapping[str, tuple[str, ...]]] = {
    "alanine_aminotransferase": ("alanine aminotransferase", "alt", "sgpt", "alat", "gpt"),
    "albumin": ("albumin",),
    "alkaline_phosphatase": ("alkaline phosphatase", "alk phos", "alp"),
    "anion_gap": ("anion gap",),
    "aspartate_aminotransferase": ("aspartate aminotransferase", "ast", "sgot", "asat", "got"),
    "bicarbonate": ("bicarbonate", "hco3", "carbon dioxide total", "total co2", "tco2"),
    "bilirubin": ("bilirubin",),
    "blood_urea_nitrogen": ("urea nitrogen", "bun", "urea"),
    "chloride": ("chloride",),
    "creatinine": ("creatinine",),
    "diastolic_blood_pressure": ("diastolic",),
    "fraction_inspired_oxygen": ("fio2", "inspired oxygen", "inhaled oxygen", "inspired gas"),
    "gcs_eye_opening": ("eye opening", "gcs eye"),
    "gcs_motor_response": ("motor response", "gcs motor"),
    "gcs_verbal_response": ("verbal response", "gcs verbal"),
    "glucose": ("glucose",),
    "heart_rate": ("heart rate", "pulse", "hr"),
    "height": ("height", "body length"),
    "hematocrit": ("hematocrit", "haematocrit", "hct"),
    "hemoglobin": ("hemoglobin", "haemoglobin", "hgb", "hb"),
    "magnesium": ("magnesium",),
    "mean_blood_pressure": (
        "mean blood pressure",
        "mean arterial pressure",
        "map",
        "blood pressure mean",
    ),
    "oxygen_saturation": ("oxygen saturation", "spo2", "sao2", "o2 sat", "o2 saturation"),
    "partial_pressure_co2": ("pco2", "paco2", "carbon dioxide", "partial pressure of co2"),
    "partial_thromboplastin_time": ("aptt", "ptt", "partial thromboplastin"),
    "platelets": ("platelet", "platelets", "thrombocytes"),
    "peep": ("peep", "positive end expiratory"),
    "potassium": ("potassium",),
    "prothrombin_time_inr": ("inr", "prothrombin"),
    "respiratory_rate": ("respiratory rate", "resp rate", "breathing rate", "rr"),
    "sodium": ("sodium",),
    "systolic_blood_pressure": ("systolic",),
    "temperature": ("temperature", "temp"),
    "troponin_t": ("troponin t",),
    # Urine output: the charting routes of the MIMIC code repository's urine-output concept.
    "urine_output": (
        "urine output",
        "urine volume",
        "foley",
        "diuresis",
        "void",
        "condom cath",
        "straight cath",
        "suprapubic",
        "nephrostomy",
        "ileoconduit",
        "ureteral stent",
    ),
    "weight": ("weight",),
    "white_blood_cell_count": ("leukocytes", "white blood cells", "white blood cell", "wbc"),
    "ph": ("ph",),
}

#: Specimens that are not blood (LOINC's "system" axis, and local displays): a value in one
#: of them is not DiPro's serum/blood variable ("Glucose [Mass/volume] in Urine").
OTHER_SPECIMENS: Final[tuple[str, ...]] = (
    "urine",
    "csf",
    "cerebral spinal fluid",
    "cerebrospinal fluid",
    "body fluid",
    "pleural fluid",
    "peritoneal fluid",
    "ascites",
    "synovial fluid",
    "stool",
    "feces",
    "saliva",
    "sweat",
    "dialysis fluid",
)

#: Words that say a value is about a variable but is not a measurement of it.
NOT_A_MEASUREMENT: Final[tuple[str, ...]] = ("alarm", "apgar", "goal", "target")

#: ``value[x]`` types (the FHIR type after ``value``), plus the markers of no own value.
PANEL: Final[str] = "panel"  # no value[x], but components or hasMember
ABSENT: Final[str] = "absent"  # dataAbsentReason
NO_VALUE: Final[str] = "none"

Reason = Literal["component", "display"]


@dataclass(frozen=True, slots=True)
class ValueProfile:
    """What the values of one code looked like over the Observations seen with it.

    Attributes:
        units: ``valueQuantity`` units (UCUM code, else the normalised unit text) with how
            often each was seen, most frequent first.
        ucum_units: Those of ``units`` that are UCUM: stated with the UCUM system, or a
            spelling :mod:`dipro_fhir.mapping.units` knows. Only these can rule a variable
            out; a local unit text ("units") proves nothing.
        value_types: ``value[x]`` types (``Quantity``, ``String``, ``CodeableConcept``,
            ``DateTime``...; or :data:`PANEL`, :data:`ABSENT`, :data:`NO_VALUE`) with counts,
            most frequent first.
    """

    units: tuple[tuple[str, int], ...] = ()
    ucum_units: frozenset[str] = frozenset()
    value_types: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Candidate:
    """A variable an unmapped code might feed, why it is suggested, and its rank score."""

    variable: str
    reason: Reason
    score: float = 0.0

    def __str__(self) -> str:
        return f"{self.variable} ({self.reason})"


def value_type(element: Mapping[str, Any]) -> str:
    """The ``value[x]`` type of an Observation or a component (``valueQuantity`` -> Quantity).

    An element without one is :data:`ABSENT` (``dataAbsentReason``), :data:`PANEL` (it has
    ``component`` or ``hasMember`` instead) or :data:`NO_VALUE`.
    """
    for key in element:
        if isinstance(key, str) and key.startswith("value") and len(key) > len("value"):
            return key[len("value") :]
    if "dataAbsentReason" in element:
        return ABSENT
    if element.get("component") or element.get("hasMember"):
        return PANEL
    return NO_VALUE


def quantity_unit_seen(quantity: Mapping[str, Any]) -> tuple[str, bool] | None:
    """A Quantity's unit as the ``codes`` command records it, and whether it is UCUM.

    ``None`` when the Quantity has no unit at all.
    """
    unit = quantity_unit(quantity)
    if unit is None:
        return None
    stated = quantity.get("system") == UCUM_SYSTEM and bool(quantity.get("code"))
    return unit, stated or is_known_unit(unit)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.casefold())


def loinc_component(display: str) -> str:
    """The component part of a LOINC long common name (the text before ``[``), normalised."""
    return " ".join(_words(display.split("[", 1)[0]))


def _analyte(system: str, display: str) -> str:
    """The text whose words name the variable: a LOINC component's first part, else all."""
    if system != LOINC_SYSTEM:
        return display
    return display.split("[", 1)[0].split("/", 1)[0]


@cache
def _known_components() -> Mapping[str, str]:
    """Component of every shipped LOINC display -> its variable."""
    table = builtin_code_maps(("loinc",)).variables
    return {
        loinc_component(t.display): t.target_code
        for t in table.entries.values()
        if t.source_system == LOINC_SYSTEM and t.display
    }


def _contains(words: list[str], term: list[str]) -> bool:
    n = len(term)
    return any(words[i : i + n] == term for i in range(len(words) - n + 1))


def _coverage(words: list[str], variable: str) -> float:
    """The largest share of ``words`` one of the variable's terms covers (0 if none)."""
    found = [len(t) for t in map(_words, VARIABLE_TERMS[variable]) if _contains(words, t)]
    return max(found, default=0) / max(len(words), 1)


def _accepts(spec: VariableSpec, unit: str) -> bool:
    return unit in spec.accepted_units or normalize_unit(unit) in spec.accepted_units


def _readable_types(spec: VariableSpec) -> frozenset[str]:
    """The ``value[x]`` types :mod:`dipro_fhir.mapping.observations` reads for ``spec``."""
    types = {"Quantity"}
    if spec.unitless_ok:
        types.add("Integer")
    if spec.kind == "ordinal":
        types.add("CodeableConcept")
    return frozenset(types)


def _value_score(spec: VariableSpec, values: ValueProfile) -> float | None:
    """How well the values fit ``spec`` (higher is better); ``None``: they rule it out."""
    if values.ucum_units and not any(_accepts(spec, u) for u in values.ucum_units):
        return None
    seen = {t for t, _ in values.value_types if t not in (NO_VALUE, ABSENT)}
    readable = seen & _readable_types(spec)
    if seen and not readable:
        return None
    units = {u for u, _ in values.units}
    score = 1.0 if readable else 0.0
    if spec.canonical_unit in units:
        score += 2.0
    elif any(_accepts(spec, u) for u in units):
        score += 1.5
    return score


def _ruled_out_by_words(words: list[str], variable: str) -> bool:
    if any(_contains(words, _words(w)) for w in NOT_A_MEASUREMENT):
        return True
    other = any(_contains(words, _words(s)) for s in OTHER_SPECIMENS)
    return other and variable != "urine_output"


def candidates(
    system: str, display: str, values: ValueProfile | None = None
) -> tuple[Candidate, ...]:
    """Variables an unmapped coding might feed, best first (module docstring).

    Args:
        system: The coding's system (the LOINC rules apply to LOINC only).
        display: The coding's display (``Coding.display``).
        values: What the code's Observations showed of their values; ``None`` judges by the
            display alone.
    """
    found: dict[str, tuple[Reason, float]] = {}
    if system == LOINC_SYSTEM and display:
        variable = _known_components().get(loinc_component(display))
        if variable is not None:
            found[variable] = ("component", 3.0)
    analyte = _words(_analyte(system, display))
    for variable in VARIABLE_TERMS:
        coverage = _coverage(analyte, variable)
        if variable not in found and coverage > 0:
            found[variable] = ("display", 1.0 + coverage)
    all_words = _words(display)
    ranked: list[Candidate] = []
    for variable, (reason, score) in found.items():
        fit = _value_score(SPECS_BY_NAME[variable], values or ValueProfile())
        if fit is None or _ruled_out_by_words(all_words, variable):
            continue
        ranked.append(Candidate(variable, reason, round(score + fit, 3)))
    return tuple(sorted(ranked, key=lambda c: -c.score))
