"""Candidate DiPro variables for a code no map knows, from its display text.

``dipro-fhir codes`` lists every Observation code a source holds; for an unmapped one it
suggests variables a person should check before adding the code to the site's ConceptMap:

* **LOINC component**: a LOINC display (the long common name, "Creatinine [Moles/volume] in
  Urine") starts with the component (the analyte, before ``[``). When it equals the
  component of a code the shipped LOINC map already maps ("Creatinine [Mass/volume] in
  Serum or Plasma"), the variable is a candidate: same analyte, but check the specimen,
  property and method (urine creatinine is *not* DiPro's creatinine).
* **display text**: the display contains a term of the variable (:data:`VARIABLE_TERMS`)
  as whole words ("Pulse rate" -> heart_rate, "HCO3 arterial" -> bicarbonate).

Suggestions only: nothing is mapped without a map. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Final, Literal

from dipro_fhir.mapping.code_maps import builtin_code_maps
from dipro_fhir.mapping.variables import LOINC_SYSTEM

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
    "mean_blood_pressure": ("mean blood pressure", "mean arterial pressure", "map"),
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
    "urine_output": ("urine output", "urine volume", "foley", "diuresis"),
    "weight": ("weight",),
    "white_blood_cell_count": ("leukocytes", "white blood cells", "white blood cell", "wbc"),
    "ph": ("ph",),
}

Reason = Literal["component", "display"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A variable an unmapped code might feed, and why it is suggested."""

    variable: str
    reason: Reason

    def __str__(self) -> str:
        return f"{self.variable} ({self.reason})"


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.casefold())


def loinc_component(display: str) -> str:
    """The component part of a LOINC long common name (the text before ``[``), normalised."""
    return " ".join(_words(display.split("[", 1)[0]))


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


def candidates(system: str, display: str) -> tuple[Candidate, ...]:
    """Variables an unmapped coding might feed, component matches first.

    Args:
        system: The coding's system (the component rule applies to LOINC only).
        display: The coding's display (``Coding.display``).
    """
    found: dict[str, Candidate] = {}
    if system == LOINC_SYSTEM and display:
        variable = _known_components().get(loinc_component(display))
        if variable is not None:
            found[variable] = Candidate(variable, "component")
    words = _words(display)
    for variable, terms in VARIABLE_TERMS.items():
        if variable not in found and any(_contains(words, _words(t)) for t in terms):
            found[variable] = Candidate(variable, "display")
    return tuple(found.values())
