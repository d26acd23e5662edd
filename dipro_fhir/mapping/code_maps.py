"""The code maps a run uses, by purpose, and the maps the product ships.

:class:`CodeMaps` holds three :class:`~dipro_fhir.mapping.concept_map.CodeTable` s built
from ConceptMaps: codes of DiPro variables (with the unit each code is recorded in),
discharge dispositions that mean a death, and local encounter classes translated to HL7 v3
ActCode. Shipped maps live beside this module as FHIR JSON (``maps/*.json``):

* ``loinc``: LOINC to the 38 variables, with the SI-unit and alternative codes;
* ``mimic-iv``: MIMIC-IV on FHIR chart, lab and output item ids to the 38 variables;
* ``discharge-disposition``: HL7 ``exp`` and common local codes (``DIED``, ``EXPIRED``...)
  to the outcome ``died``.

A site's own maps (a folder, or the FHIR server by canonical URL) are loaded by
:mod:`dipro_fhir.fhir.concept_maps` and merged after these, so they win. Reading the
shipped JSON is reading package data, the same on every machine: the module stays pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final

from dipro_fhir.mapping.concept_map import (
    ACT_CODE_SYSTEM,
    OUTCOME_SYSTEM,
    VARIABLE_SYSTEM,
    CodeTable,
    ConceptMapError,
    code_table,
)
from dipro_fhir.mapping.units import normalize_unit
from dipro_fhir.mapping.variables import LOINC_SYSTEM, SPECS_BY_NAME, VariableSpec

#: The shipped maps, in merge order.
BUILTIN_MAPS: Final[tuple[str, ...]] = ("loinc", "mimic-iv", "discharge-disposition")


@dataclass(frozen=True, slots=True)
class VariableCode:
    """What one source coding feeds: a variable, and the unit the site records it in."""

    spec: VariableSpec
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class CodeMaps:
    """A run's code maps.

    Attributes:
        variables: Source codings -> DiPro variable names (:data:`VARIABLE_SYSTEM`).
        outcomes: Discharge dispositions -> ``died`` (:data:`OUTCOME_SYSTEM`).
        classes: Local encounter classes -> v3 ActCode (:data:`ACT_CODE_SYSTEM`).
    """

    variables: CodeTable
    outcomes: CodeTable
    classes: CodeTable

    def variable_of(self, system: object, code: object) -> VariableCode | None:
        """The variable a ``Coding`` feeds, or ``None``."""
        found = self.variables.lookup(system, code)
        if found is None:
            return None
        return VariableCode(SPECS_BY_NAME[found.target_code], found.unit)

    @property
    def labels(self) -> tuple[str, ...]:
        """``url|version`` of every map in use (for provenance and the run summary)."""
        return tuple(dict.fromkeys(self.variables.maps + self.outcomes.maps + self.classes.maps))


def _check_variables(table: CodeTable) -> None:
    for t in table.entries.values():
        spec = SPECS_BY_NAME.get(t.target_code)
        if spec is None:
            raise ConceptMapError(f"{t.concept_map}: {t.target_code!r} is not a DiPro variable")
        if t.unit is not None and normalize_unit(t.unit) not in spec.accepted_units:
            raise ConceptMapError(
                f"{t.concept_map}: unit {t.unit!r} of {t.source_code} is not accepted for "
                f"{spec.name} (accepted: {', '.join(spec.accepted_units)})"
            )


def build_code_maps(concept_maps: Sequence[Mapping[str, Any]]) -> CodeMaps:
    """Sort ConceptMaps' groups by target and merge them in order (later maps win).

    Groups with other targets are not DiPro's business and are skipped.

    Raises:
        ConceptMapError: A map is malformed, names an unknown variable, or gives a unit the
            variable does not accept.
    """
    variables = code_table(VARIABLE_SYSTEM, concept_maps)
    _check_variables(variables)
    return CodeMaps(
        variables=variables,
        outcomes=code_table(OUTCOME_SYSTEM, concept_maps),
        classes=code_table(ACT_CODE_SYSTEM, concept_maps),
    )


def builtin_concept_map(name: str) -> dict[str, Any]:
    """The shipped ConceptMap ``name`` (one of :data:`BUILTIN_MAPS`) as FHIR JSON."""
    if name not in BUILTIN_MAPS:
        raise ConceptMapError(f"no shipped map {name!r}; choose from {', '.join(BUILTIN_MAPS)}")
    text = resources.files("dipro_fhir.mapping").joinpath("maps", f"{name}.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def builtin_code_maps(names: tuple[str, ...] = BUILTIN_MAPS) -> CodeMaps:
    """The code maps of the shipped maps ``names`` (cached: they never change at run time)."""
    return build_code_maps([builtin_concept_map(n) for n in names])


def default_code_maps() -> CodeMaps:
    """Every shipped map: what a run uses when the site configures nothing."""
    return builtin_code_maps(BUILTIN_MAPS)


def loinc_codes(variable: str) -> tuple[str, ...]:
    """The shipped LOINC codes of a variable, primary first (the map's element order)."""
    table = builtin_code_maps(("loinc",)).variables
    return tuple(
        t.source_code for t in table.sources_of(variable) if t.source_system == LOINC_SYSTEM
    )


def primary_loinc(variable: str) -> str:
    """The LOINC code to write when producing a variable (synthetic cohorts)."""
    return loinc_codes(variable)[0]
