"""UCUM-aware unit resolution and conversion to each DiPro variable's canonical unit.

A FHIR ``Quantity`` carries a machine unit (``code``, with ``system`` = UCUM) and a human one
(``unit``). We prefer the UCUM code (FHIR R4 Quantity: "code ... SHALL be a UCUM code when
system is UCUM"), and fall back to the text only when there is no UCUM code, through a small
alias table of spellings seen in practice ("lbs", "bpm", "mmHg", "K/uL"). Conversions are the
per-variable affine maps of :mod:`dipro_fhir.mapping.variables`: mass <-> substance
conversions depend on the analyte (glucose 18.016 mg/dL per mmol/L, creatinine 88.42 umol/L
per mg/dL), so there is no unit-only conversion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from dipro_fhir.core.errors import DiproFhirError
from dipro_fhir.mapping.variables import SPECS_BY_NAME, UnitConversion, VariableSpec

#: FHIR Quantity.system for UCUM.
UCUM_SYSTEM: Final[str] = "http://unitsofmeasure.org"


class UnitError(DiproFhirError):
    """A unit is unknown, or not accepted for the variable it was given with."""


# Lower-cased spellings -> UCUM code. Exact UCUM codes are matched first (case-sensitive),
# so this table only needs the non-UCUM and wrongly-cased spellings.
_ALIASES: Final[Mapping[str, str]] = {
    # mass
    "lb": "[lb_av]", "lbs": "[lb_av]", "pound": "[lb_av]", "pounds": "[lb_av]",
    "[lb_av]": "[lb_av]", "oz": "[oz_av]", "[oz_av]": "[oz_av]", "kg": "kg", "g": "g",
    "kgs": "kg", "kilogram": "kg", "kilograms": "kg",
    # length
    "in": "[in_i]", "inch": "[in_i]", "inches": "[in_i]", "[in_i]": "[in_i]",
    "ft": "[ft_i]", "cm": "cm", "m": "m", "mm": "mm",
    # temperature
    "°f": "[degF]", "degf": "[degF]", "deg f": "[degF]", "f": "[degF]", "[degf]": "[degF]",
    "°c": "Cel", "degc": "Cel", "deg c": "Cel", "c": "Cel", "cel": "Cel",
    "degrees c": "Cel", "degrees celsius": "Cel", "celsius": "Cel", "k": "K", "kelvin": "K",
    # rates
    "bpm": "/min", "/min": "/min", "1/min": "/min", "per min": "/min", "beats/min": "/min",
    "beats/minute": "/min", "breaths/min": "/min", "breaths/minute": "/min",
    "{beats}/min": "/min", "{breaths}/min": "/min", "/h": "/h", "insp/min": "/min",
    # pressure
    "mmhg": "mm[Hg]", "mm hg": "mm[Hg]", "mm[hg]": "mm[Hg]", "kpa": "kPa",
    "cmh2o": "cm[H2O]", "cm h2o": "cm[H2O]", "cm[h2o]": "cm[H2O]", "mbar": "mbar", "hpa": "hPa",
    # concentrations
    "mmol/l": "mmol/L", "meq/l": "meq/L", "mg/dl": "mg/dL", "g/dl": "g/dL", "g/l": "g/L",
    "mg/l": "mg/L", "umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L",
    "ng/ml": "ng/mL", "ng/l": "ng/L", "pg/ml": "pg/mL", "ug/l": "ug/L", "µg/l": "ug/L",
    "u/l": "U/L", "iu/l": "U/L", "[iu]/l": "U/L", "u/ml": "U/mL",
    # counts
    "k/ul": "10*3/uL", "k/µl": "10*3/uL", "10*3/ul": "10*3/uL", "10^3/ul": "10*3/uL",
    "x10^3/ul": "10*3/uL", "x10e3/ul": "10*3/uL", "thou/ul": "10*3/uL", "10*9/l": "10*9/L",
    "10^9/l": "10*9/L", "x10^9/l": "10*9/L", "/ul": "/uL", "/mm3": "/mm3",
    # volume, time, dimensionless
    "ml": "mL", "l": "L", "s": "s", "sec": "s", "secs": "s", "seconds": "s", "min": "min",
    "%": "%", "percent": "%", "fraction": "1", "ratio": "{ratio}", "inr": "{INR}",
    "{inr}": "{INR}", "{score}": "{score}", "score": "{score}", "points": "{points}",
    "ph": "[pH]", "[ph]": "[pH]", "l/l": "L/L",
}  # fmt: skip


def normalize_unit(text: str) -> str:
    """Return the UCUM code for a unit spelling, or the stripped text when none is known.

    Args:
        text: A UCUM code or a human spelling ("lbs", "bpm", "mmHg").
    """
    stripped = text.strip()
    return _ALIASES.get(stripped.lower(), stripped)


def is_known_unit(text: str) -> bool:
    """Whether a unit spelling is one this module knows (accepted by some variable, or an
    alias), as opposed to a local text it cannot read."""
    normalized = normalize_unit(text)
    return normalized in _KNOWN or normalized in _ALIASES.values()


def quantity_unit(quantity: Mapping[str, Any]) -> str | None:
    """Return the unit of a FHIR Quantity, UCUM code preferred, else its normalised text.

    ``None`` means the Quantity carries no unit at all (neither ``code`` nor ``unit``).
    """
    code = quantity.get("code")
    system = quantity.get("system")
    if isinstance(code, str) and code.strip() and (system is None or system == UCUM_SYSTEM):
        return normalize_unit(code)
    text = quantity.get("unit")
    if isinstance(text, str) and text.strip():
        return normalize_unit(text)
    return None


_KNOWN: Final[frozenset[str]] = frozenset(
    c.unit for spec in SPECS_BY_NAME.values() for c in spec.conversions
)


def _conversion(spec: VariableSpec, unit: str) -> UnitConversion:
    exact = [c for c in spec.conversions if c.unit == unit]
    if not exact:
        normalized = normalize_unit(unit)
        exact = [c for c in spec.conversions if c.unit == normalized]
    if not exact:
        raise UnitError(f"unit {unit!r} is not accepted for {spec.name}")
    return exact[0]


def to_canonical(value: float, unit: str, spec: VariableSpec) -> float:
    """Convert ``value`` in ``unit`` to ``spec``'s canonical unit.

    Raises:
        UnitError: ``unit`` is not accepted for the variable.
    """
    conv = _conversion(spec, unit)
    return value * conv.scale + conv.offset


def convert(value: float, from_unit: str, to_unit: str, variable: str) -> float:
    """Convert a value of a DiPro variable between two of its accepted units.

    Args:
        value: The number, in ``from_unit``.
        from_unit: A UCUM code or alias accepted for the variable.
        to_unit: A UCUM code or alias accepted for the variable.
        variable: A name from ``dipro.vocab.VARIABLES``.

    Returns:
        The value in ``to_unit``.

    Raises:
        UnitError: Unknown variable, unit not accepted for it, or a non-finite value.
    """
    spec = SPECS_BY_NAME.get(variable)
    if spec is None:
        raise UnitError(f"{variable!r} is not a DiPro variable")
    if not math.isfinite(value):
        raise UnitError("value is not finite")
    canonical = to_canonical(value, from_unit, spec)
    target = _conversion(spec, to_unit)
    return (canonical - target.offset) / target.scale
