"""DiPro's 38 EHR variables: canonical units, accepted units, ranges and normal values.

DiPro was trained on MIMIC-IV MetaVision chart items (reference §1.4); a hospital speaks LOINC
and local codes (reference §7.2). *Which codes* feed a variable is data, not code: FHIR
ConceptMaps (:mod:`dipro_fhir.mapping.code_maps`; the shipped LOINC map is one, the MIMIC-IV
map another, a site adds its own). This module says, for each of the 38 variables in
``dipro.vocab.VARIABLES`` order, what a value must look like once its code is known: its
canonical UCUM unit (the unit of the MIMIC item the model saw), the other units accepted and
their affine conversion to the canonical one, the physiologic range outside which a value is
*dropped* (never clipped: clipping to the model's outlier range happens at normalisation,
§1.4 step 1), the "normal" value used for imputation (the IMPUTE column of
``variable_ranges.csv``, §1.4 step 5), and whether the variable is continuous or ordinal
(the three GCS parts).

Any change to units, ranges or normals, or to the shipped maps, bumps
:data:`VARIABLE_MAP_VERSION`, so a result can be traced to the map that produced it.

Choices worth knowing (reference §7.2 "checking units and item choice"; the code choices are
described in the shipped ConceptMaps' ``description``):

* ``prothrombin_time_inr`` is the INR (MIMIC item 227467), not the PT in seconds.
* ``bicarbonate`` also takes total CO2: basic metabolic panels report HCO3 that way.
* Electrolytes: mEq/L equals mmol/L for the monovalent ions; magnesium (divalent) is
  1 mmol/L = 2 meq/L = 2.43 mg/dL.
* ``gcs_verbal_response`` normal is 4, as the reference gives it (§1.4 step 5), not the
  clinical 5: the model was trained with that imputation.
* Normal values the reference does not name are the mimic3-benchmark ``variable_ranges.csv``
  IMPUTE values as recorded when this map was written; re-check them against the checkpoint's
  training statistics before changing the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from dipro.vocab import VARIABLES

#: Version of this map; stored with every score. Bump on any change below.
VARIABLE_MAP_VERSION: Final[str] = "2026.12.2"

#: LOINC code system URI (FHIR Coding.system).
LOINC_SYSTEM: Final[str] = "http://loinc.org"

#: The LOINC code of the vital-signs blood pressure panel (components carry the values).
BP_PANEL_LOINC: Final[str] = "85354-9"

VariableKind = Literal["continuous", "ordinal"]
HourlyAggregation = Literal["last", "sum"]


@dataclass(frozen=True, slots=True)
class UnitConversion:
    """One accepted UCUM unit and its affine map to the variable's canonical unit.

    ``canonical = value * scale + offset``.

    Attributes:
        unit: The UCUM code (case-sensitive, as in ``Quantity.code``).
        scale: Multiplier to the canonical unit.
        offset: Added after scaling (only temperatures have one).
    """

    unit: str
    scale: float
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class VariableSpec:
    """How one DiPro variable is read from FHIR.

    Attributes:
        name: The variable's name in ``dipro.vocab.VARIABLES``.
        canonical_unit: UCUM code of the unit the model expects.
        conversions: Every accepted unit (the canonical one first, scale 1).
        valid_range: ``(low, high)`` inclusive, in the canonical unit; a value outside is
            physiologically implausible and is dropped with an ``out-of-range`` issue.
        normal: The imputation value in the canonical unit (reference §1.4 step 5).
        kind: ``continuous`` or ``ordinal`` (GCS parts: integer scores).
        unitless_ok: Whether a Quantity with no unit at all is read as the canonical unit
            (dimensionless scores and ratios: GCS, INR, pH).
        hourly: How several values in one hour become the hour's value: ``last`` (a state:
            heart rate, a lab) or ``sum`` (a volume per hour: urine output, charted per void
            or per bag).
    """

    name: str
    canonical_unit: str
    conversions: tuple[UnitConversion, ...]
    valid_range: tuple[float, float]
    normal: float
    kind: VariableKind = "continuous"
    unitless_ok: bool = False
    hourly: HourlyAggregation = "last"

    @property
    def accepted_units(self) -> tuple[str, ...]:
        """All accepted UCUM codes, canonical first."""
        return tuple(c.unit for c in self.conversions)


def _units(
    canonical: str, *others: tuple[str, float] | tuple[str, float, float]
) -> tuple[UnitConversion, ...]:
    """Build the conversion tuple: the canonical unit (scale 1) first, then the others."""
    return (UnitConversion(canonical, 1.0), *(UnitConversion(*o) for o in others))


# Shared unit sets. Factors: UCUM definitions; molar masses for mass <-> substance.
_ENZYME = _units("U/L", ("[IU]/L", 1.0), ("U/mL", 1000.0))
_MONOVALENT = _units("mmol/L", ("meq/L", 1.0))
_PRESSURE_MMHG = _units("mm[Hg]", ("kPa", 7.500617))
_RATE = _units(
    "/min",
    ("{beats}/min", 1.0),
    ("{breaths}/min", 1.0),
    ("{beat}/min", 1.0),
    ("{breath}/min", 1.0),
    ("/h", 1.0 / 60.0),
)
_COUNT_PER_UL = _units(
    "10*3/uL", ("10*9/L", 1.0), ("10*3/mm3", 1.0), ("/uL", 1e-3), ("/mm3", 1e-3), ("10*6/mL", 1.0)
)
_SCORE = _units("{score}", ("1", 1.0), ("{Score}", 1.0), ("{points}", 1.0))
_MG_DL_GLUCOSE = _units("mg/dL", ("mmol/L", 18.016), ("g/L", 100.0), ("mg/L", 0.1))


def _spec(
    name: str,
    conversions: tuple[UnitConversion, ...],
    valid_range: tuple[float, float],
    normal: float,
    *,
    kind: VariableKind = "continuous",
    unitless_ok: bool = False,
    hourly: HourlyAggregation = "last",
) -> VariableSpec:
    return VariableSpec(
        name=name,
        canonical_unit=conversions[0].unit,
        conversions=conversions,
        valid_range=valid_range,
        normal=normal,
        kind=kind,
        unitless_ok=unitless_ok,
        hourly=hourly,
    )


_SPECS: Final[tuple[VariableSpec, ...]] = (
    _spec("alanine_aminotransferase", _ENZYME, (0.0, 11000.0), 34.0),
    _spec("albumin", _units("g/dL", ("g/L", 0.1)), (0.5, 10.0), 3.1),
    _spec("alkaline_phosphatase", _ENZYME, (0.0, 4000.0), 106.0),
    _spec("anion_gap", _MONOVALENT, (-20.0, 60.0), 13.0),
    _spec("aspartate_aminotransferase", _ENZYME, (0.0, 22000.0), 40.0),
    _spec("bicarbonate", _MONOVALENT, (0.0, 70.0), 25.0),
    _spec(
        "bilirubin",
        _units("mg/dL", ("umol/L", 1.0 / 17.104)),
        (0.0, 70.0),
        0.9,
    ),
    _spec(
        "blood_urea_nitrogen",
        _units("mg/dL", ("mmol/L", 2.8), ("mg/L", 0.1)),
        (0.0, 300.0),
        23.0,
    ),
    _spec("chloride", _MONOVALENT, (50.0, 180.0), 104.0),
    _spec(
        "creatinine",
        _units("mg/dL", ("umol/L", 1.0 / 88.42), ("mmol/L", 1000.0 / 88.42)),
        (0.05, 70.0),
        1.0,
    ),
    _spec("diastolic_blood_pressure", _PRESSURE_MMHG, (5.0, 300.0), 59.0),
    _spec("fraction_inspired_oxygen", _units("1", ("%", 0.01)), (0.2, 1.0), 0.21),
    _spec("gcs_eye_opening", _SCORE, (1.0, 4.0), 4.0, kind="ordinal", unitless_ok=True),
    _spec("gcs_motor_response", _SCORE, (1.0, 6.0), 6.0, kind="ordinal", unitless_ok=True),
    _spec(
        "gcs_verbal_response",
        _SCORE,
        (1.0, 5.0),
        4.0,
        kind="ordinal",
        unitless_ok=True,
    ),
    _spec(
        "glucose",
        _MG_DL_GLUCOSE,
        (5.0, 2200.0),
        128.0,
    ),
    _spec("heart_rate", _RATE, (0.0, 350.0), 86.0),
    _spec(
        "height",
        _units(
            "cm", ("m", 100.0), ("mm", 0.1), ("[in_i]", 2.54), ("[in_us]", 2.54), ("[ft_i]", 30.48)
        ),
        (20.0, 275.0),
        170.0,
    ),
    _spec(
        "hematocrit",
        _units("%", ("1", 100.0), ("L/L", 100.0)),
        (5.0, 100.0),
        30.9,
    ),
    _spec(
        "hemoglobin",
        _units("g/dL", ("g/L", 0.1), ("mmol/L", 1.6114)),
        (1.0, 30.0),
        10.2,
    ),
    _spec(
        "magnesium",
        _units("mg/dL", ("mmol/L", 2.43), ("meq/L", 1.215)),
        (0.1, 22.0),
        2.0,
    ),
    _spec("mean_blood_pressure", _PRESSURE_MMHG, (5.0, 300.0), 77.0),
    _spec(
        "oxygen_saturation",
        _units("%", ("1", 100.0)),
        (0.0, 100.0),
        98.0,
    ),
    _spec("partial_pressure_co2", _PRESSURE_MMHG, (5.0, 250.0), 40.0),
    _spec(
        "partial_thromboplastin_time",
        _units("s", ("min", 60.0)),
        (5.0, 250.0),
        34.3,
    ),
    _spec("platelets", _COUNT_PER_UL, (0.0, 2200.0), 208.0),
    _spec(
        "peep",
        _units("cm[H2O]", ("mbar", 1.019716), ("hPa", 1.019716)),
        (0.0, 50.0),
        5.0,
    ),
    _spec("potassium", _MONOVALENT, (0.5, 15.0), 4.1),
    _spec(
        "prothrombin_time_inr",
        _units("{INR}", ("1", 1.0), ("{ratio}", 1.0)),
        (0.1, 25.0),
        1.1,
        unitless_ok=True,
    ),
    _spec("respiratory_rate", _RATE, (0.0, 150.0), 19.0),
    _spec("sodium", _MONOVALENT, (80.0, 220.0), 139.0),
    _spec("systolic_blood_pressure", _PRESSURE_MMHG, (10.0, 350.0), 118.0),
    _spec(
        "temperature",
        _units("Cel", ("[degF]", 5.0 / 9.0, -160.0 / 9.0), ("K", 1.0, -273.15)),
        (14.0, 47.0),
        37.0,
    ),
    _spec(
        "troponin_t",
        _units("ng/mL", ("ug/L", 1.0), ("ng/L", 1e-3), ("pg/mL", 1e-3)),
        (0.0, 100.0),
        0.1,
    ),
    _spec(
        "urine_output",
        _units("mL", ("L", 1000.0), ("cm3", 1.0)),
        (0.0, 5000.0),
        120.0,
        hourly="sum",
    ),
    _spec(
        "weight",
        _units("kg", ("g", 1e-3), ("[lb_av]", 0.45359237), ("[oz_av]", 0.028349523125)),
        (0.3, 500.0),
        81.8,
    ),
    _spec("white_blood_cell_count", _COUNT_PER_UL, (0.0, 1100.0), 9.9),
    _spec(
        "ph",
        _units("[pH]", ("1", 1.0), ("{pH}", 1.0)),
        (6.3, 8.4),
        7.4,
        unitless_ok=True,
    ),
)

#: Every variable's spec, in ``dipro.vocab.VARIABLES`` order.
VARIABLE_SPECS: Final[tuple[VariableSpec, ...]] = _SPECS

#: Spec by variable name.
SPECS_BY_NAME: Final = MappingProxyType({s.name: s for s in _SPECS})

if tuple(s.name for s in _SPECS) != VARIABLES:  # pragma: no cover - import-time contract
    raise ImportError("variable map order differs from dipro.vocab.VARIABLES")


def spec_for(name: str) -> VariableSpec:
    """Return the spec of a DiPro variable.

    Args:
        name: A name from ``dipro.vocab.VARIABLES``.

    Raises:
        KeyError: ``name`` is not a DiPro variable.
    """
    return SPECS_BY_NAME[name]
