"""One FHIR R4 Observation (raw JSON) -> DiPro observation events and mapping issues.

Rules (each cites the FHIR R4 Observation element it reads):

* ``code.coding`` (system and code) is looked up in the run's code maps
  (:class:`~dipro_fhir.mapping.code_maps.CodeMaps`: the shipped LOINC and MIMIC-IV
  ConceptMaps and the site's own). An Observation with no mapped code, top-level or in a
  ``component``, yields nothing and *no issue* here: hospitals hold many observations DiPro
  does not use. They are counted per code in the run's data-quality summary instead
  (:mod:`dipro_fhir.mapping.quality`), so nothing vanishes unreported.
* ``status``: ``final``, ``amended``, ``corrected`` and ``preliminary`` count. Preliminary
  counts because ICU vitals are often charted unvalidated, and a clinician at ``as_of`` saw
  the value. ``registered``, ``cancelled``, ``entered-in-error`` and ``unknown`` give one
  ``ignored-status`` issue and no events, so nothing vanishes silently.
* ``effective[x]``: ``effectiveDateTime``, ``effectiveInstant``, or ``effectivePeriod`` taken
  at its ``end`` when present (the value is complete then, e.g. urine collected over a
  period; and the later time can only delay a value, never leak one), else its ``start``.
  A date-only time is taken at 00:00 UTC with an ``imprecise-time`` issue; coarser times and
  times without a timezone are ``invalid-resource``.
* ``value[x]``: ``valueQuantity`` converted to the canonical unit (``unknown-unit`` if the
  unit is not accepted; ``censored-value`` for a ``comparator`` such as "<0.01", dropped).
  When the Quantity has no unit, or only a local unit text that is not UCUM (MIMIC's
  ``mimic-units``: "insp/min"), the unit the code map gives for the code is used; a UCUM
  unit the variable does not accept stays an error. Also
  ``valueInteger`` for unitless variables (GCS, INR, pH), ``valueCodeableConcept`` for GCS
  via the ``ordinalValue`` extension or the LOINC answer code. Anything else is
  ``invalid-value``. ``dataAbsentReason`` gives ``data-absent``.
* ``component``: each component with a DiPro code is read like a top-level value (BP panel
  85354-9 -> systolic + diastolic; Glasgow 9269-2 -> eye, motor, verbal).
* Values outside the variable's physiologic range are dropped with ``out-of-range``.

Malformed input never raises: it becomes an ``invalid-resource`` or ``invalid-value`` issue.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from dipro_fhir.core.timeline import MappingIssue, ObservationEvent, ResourceRef
from dipro_fhir.mapping.code_maps import CodeMaps, VariableCode, default_code_maps
from dipro_fhir.mapping.times import parse_fhir_time
from dipro_fhir.mapping.units import (
    UCUM_SYSTEM,
    UnitError,
    is_known_unit,
    quantity_unit,
    to_canonical,
)
from dipro_fhir.mapping.variables import LOINC_SYSTEM, VariableSpec

#: Observation.status values whose values are used.
ACCEPTED_STATUSES: Final[frozenset[str]] = frozenset(
    {"final", "amended", "corrected", "preliminary"}
)

#: FHIR extension carrying the ordinal value of a coded answer (R4 core extension).
ORDINAL_VALUE_URLS: Final[frozenset[str]] = frozenset(
    {
        "http://hl7.org/fhir/StructureDefinition/ordinalValue",
        "http://hl7.org/fhir/StructureDefinition/itemWeight",
    }
)

#: LOINC answer codes of the Glasgow coma scale parts (answer lists of 9267-6, 9268-4,
#: 9270-0) -> (variable, score).
GCS_ANSWERS: Final[Mapping[str, tuple[str, int]]] = {
    "LA6553-7": ("gcs_eye_opening", 1),
    "LA6554-5": ("gcs_eye_opening", 2),
    "LA6555-2": ("gcs_eye_opening", 3),
    "LA6556-0": ("gcs_eye_opening", 4),
    "LA6557-8": ("gcs_verbal_response", 1),
    "LA6558-6": ("gcs_verbal_response", 2),
    "LA6559-4": ("gcs_verbal_response", 3),
    "LA6560-2": ("gcs_verbal_response", 4),
    "LA6561-0": ("gcs_verbal_response", 5),
    "LA6562-8": ("gcs_motor_response", 1),
    "LA6563-6": ("gcs_motor_response", 2),
    "LA6564-4": ("gcs_motor_response", 3),
    "LA6565-1": ("gcs_motor_response", 4),
    "LA6566-9": ("gcs_motor_response", 5),
    "LA6567-7": ("gcs_motor_response", 6),
}

_Result = tuple[list[ObservationEvent], list[MappingIssue]]


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list | tuple) else ()


def resource_ref(resource: Mapping[str, Any]) -> ResourceRef | None:
    """Return the resource's :class:`ResourceRef` (with ``meta.versionId``), if it has an id."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if not isinstance(rtype, str) or not isinstance(rid, str) or not rid:
        return None
    version = _dict(resource.get("meta")).get("versionId")
    return ResourceRef(rtype, rid, version if isinstance(version, str) else None)


def _specs_of(concept: object, maps: CodeMaps) -> list[VariableCode]:
    """The distinct variables a CodeableConcept's codings feed, in coding order.

    Two codings of one variable (LOINC and a local code) count once, with the first unit.
    """
    found: list[VariableCode] = []
    for coding in _list(_dict(concept).get("coding")):
        c = _dict(coding)
        variable = maps.variable_of(c.get("system"), c.get("code"))
        if variable is not None and all(v.spec != variable.spec for v in found):
            found.append(variable)
    return found


def dipro_variables_of(
    resource: Mapping[str, Any], maps: CodeMaps | None = None
) -> tuple[str, ...]:
    """Return the DiPro variables an Observation's codes name (top level and components).

    An empty tuple means the Observation is not a DiPro input (it is counted as unmapped in
    the data-quality summary, not raised as an issue).
    """
    if not isinstance(resource, Mapping):
        return ()
    maps = maps or default_code_maps()
    names = [v.spec.name for v in _specs_of(resource.get("code"), maps)]
    for comp in _list(resource.get("component")):
        names.extend(v.spec.name for v in _specs_of(_dict(comp).get("code"), maps))
    return tuple(dict.fromkeys(names))


def effective_time(resource: Mapping[str, Any]) -> tuple[datetime | None, str]:
    """Return the Observation's effective time in UTC and its precision.

    Reads ``effectiveDateTime``, ``effectiveInstant`` or ``effectivePeriod`` (``end`` if
    present, else ``start``). Returns ``(None, reason)`` when absent or unparseable.
    """
    raw: object = resource.get("effectiveDateTime", resource.get("effectiveInstant"))
    if raw is None and "effectivePeriod" in resource:
        period = _dict(resource.get("effectivePeriod"))
        raw = period.get("end", period.get("start"))
    if raw is None:
        return None, "no effective time"
    parsed = parse_fhir_time(raw)
    if parsed is None:
        return None, "unparseable effective time"
    if parsed.precision in ("year", "month"):
        return None, "effective time coarser than a day"
    return parsed.value, parsed.precision


#: How the time a resource became known is read (``RunSettings.availability``).
#: ``strict``: the later of ``issued`` and ``meta.lastUpdated`` (any later edit counts);
#: ``issued``: ``issued`` when present, else ``meta.lastUpdated``. Use ``issued`` for data
#: loaded into a server after the fact (a sandbox, a migration), where every
#: ``lastUpdated`` is the load time and ``strict`` would hide everything from a backfill.
AVAILABILITY_RULES: Final[tuple[str, ...]] = ("strict", "issued")


def available_at(resource: Mapping[str, Any], rule: str = "strict") -> datetime | None:
    """Return when the value became known, by ``rule`` (see :data:`AVAILABILITY_RULES`).

    ``None`` when neither time is present and parseable. Used to forbid look-ahead: a
    resource known only after ``as_of`` must not reach a timeline built as of then.
    """
    if rule not in AVAILABILITY_RULES:
        raise ValueError(f"availability rule {rule!r} is not one of {AVAILABILITY_RULES}")
    if not isinstance(resource, Mapping):
        return None
    issued = parse_fhir_time(resource.get("issued"))
    if rule == "issued" and issued is not None:
        return issued.value
    times = [issued, parse_fhir_time(_dict(resource.get("meta")).get("lastUpdated"))]
    known = [t.value for t in times if t is not None]
    return max(known) if known else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _ordinal(concept: Mapping[str, Any], spec: VariableSpec) -> float | None:
    """A GCS score from a coded answer: ordinalValue extension, else LOINC answer code."""
    codings = [_dict(c) for c in _list(concept.get("coding"))]
    for coding in codings:
        for ext in _list(coding.get("extension")):
            e = _dict(ext)
            if e.get("url") in ORDINAL_VALUE_URLS:
                number = _number(e.get("valueDecimal", e.get("valueInteger")))
                if number is not None:
                    return number
    for coding in codings:
        code = coding.get("code")
        if coding.get("system") != LOINC_SYSTEM or not isinstance(code, str):
            continue
        answer = GCS_ANSWERS.get(code)
        if answer is not None and answer[0] == spec.name:
            return float(answer[1])
    return None


def _quantity(qty: Mapping[str, Any], variable: VariableCode) -> tuple[float | None, str, str]:
    """A ``valueQuantity`` in the canonical unit, falling back to the code map's unit."""
    spec = variable.spec
    number = _number(qty.get("value"))
    if number is None:
        return None, "invalid-value", "valueQuantity.value is not a finite number"
    if qty.get("comparator") is not None:
        return None, "censored-value", f"comparator {qty.get('comparator')!s:.4} dropped"
    unit = quantity_unit(qty)
    if unit is None and spec.unitless_ok and variable.unit is None:
        return number, "", ""
    try:
        return to_canonical(number, unit or variable.unit or "", spec), "", ""
    except UnitError:
        ucum_stated = qty.get("system") == UCUM_SYSTEM and bool(qty.get("code"))
        local_text = unit is not None and not ucum_stated and not is_known_unit(unit)
        if variable.unit is not None and local_text:
            return to_canonical(number, variable.unit, spec), "", ""
        return None, "unknown-unit", f"unit {unit!s:.40} not accepted for {spec.name}"


def _read_value(
    element: Mapping[str, Any], variable: VariableCode
) -> tuple[float | None, str, str]:
    """Read ``value[x]`` as the canonical number; else ``(None, issue code, detail)``."""
    spec = variable.spec
    if "valueQuantity" in element:
        return _quantity(_dict(element["valueQuantity"]), variable)
    if "valueInteger" in element and spec.unitless_ok:
        number = _number(element["valueInteger"])
        if number is not None:
            return number, "", ""
        return None, "invalid-value", "valueInteger is not an integer"
    if "valueCodeableConcept" in element and spec.kind == "ordinal":
        number = _ordinal(_dict(element["valueCodeableConcept"]), spec)
        if number is not None:
            return number, "", ""
        return None, "invalid-value", f"no ordinal score for {spec.name}"
    if "dataAbsentReason" in element:
        reason = _dict(element["dataAbsentReason"]).get("coding")
        code = _dict(_list(reason)[0]).get("code") if _list(reason) else None
        return None, "data-absent", f"{spec.name}: {code!s:.30}"
    return None, "invalid-value", f"no usable value[x] for {spec.name}"


def _event(
    element: Mapping[str, Any], variable: VariableCode, when: datetime, ref: ResourceRef
) -> tuple[ObservationEvent | None, MappingIssue | None]:
    spec = variable.spec
    value, code, detail = _read_value(element, variable)
    if value is None:
        return None, MappingIssue(code, ref.reference, detail)
    if spec.kind == "ordinal" and value != round(value):
        return None, MappingIssue("invalid-value", ref.reference, f"{spec.name} not an integer")
    low, high = spec.valid_range
    if not low <= value <= high:
        detail = f"{spec.name}={value:.6g} {spec.canonical_unit} dropped: outside [{low}, {high}]"
        return None, MappingIssue("out-of-range", ref.reference, detail)
    return ObservationEvent(spec.name, value, when, ref), None


def _elements(
    resource: Mapping[str, Any], ref: ResourceRef, maps: CodeMaps
) -> tuple[list[Any], list[Any]]:
    """The (element, variable) pairs to read, and issues for ambiguous codes."""
    pairs: list[Any] = []
    issues: list[MappingIssue] = []
    for element in [resource, *(_dict(c) for c in _list(resource.get("component")))]:
        specs = _specs_of(element.get("code"), maps)
        if len(specs) > 1:
            names = ",".join(s.spec.name for s in specs)
            issues.append(MappingIssue("ambiguous-code", ref.reference, names))
        elif specs:
            has_value = any(
                isinstance(k, str) and (k.startswith("value") or k == "dataAbsentReason")
                for k in element
            )
            if element is resource and not has_value and resource.get("component"):
                continue  # a panel code whose values live in its components
            pairs.append((element, specs[0]))
    return pairs, issues


def map_observation(resource: Mapping[str, Any], maps: CodeMaps | None = None) -> _Result:
    """Map one raw FHIR R4 Observation to DiPro events and issues; never raises on bad data.

    Args:
        resource: The Observation as FHIR JSON (a mapping).
        maps: The run's code maps (default: the shipped maps).

    Returns:
        The events (canonical units, physiologic range checked) and the issues met.
    """
    maps = maps or default_code_maps()
    if not isinstance(resource, Mapping) or not dipro_variables_of(resource, maps):
        return [], []
    ref = resource_ref(resource)
    if ref is None or ref.resource_type != "Observation":
        return [], [MappingIssue("invalid-resource", None, "not an Observation with an id")]
    status = resource.get("status")
    if status not in ACCEPTED_STATUSES:
        return [], [MappingIssue("ignored-status", ref.reference, f"status {status!s:.20}")]
    when, precision = effective_time(resource)
    if when is None:
        return [], [MappingIssue("invalid-resource", ref.reference, precision)]
    pairs, issues = _elements(resource, ref, maps)
    if precision == "day":
        issues.append(MappingIssue("imprecise-time", ref.reference, "date only, read as 00:00Z"))
    events: list[ObservationEvent] = []
    for element, variable in pairs:
        event, issue = _event(element, variable, when, ref)
        if event is not None:
            events.append(event)
        if issue is not None:
            issues.append(issue)
    return events, issues
