"""Which Observation codes a source holds: ``dipro-fhir codes``, a site's day-one command.

It streams every Observation of the configured FHIR source (a server through paged
searches, or NDJSON files line by line; only counts per distinct code are kept, never the
cohort) and lists each coding seen in ``Observation.code`` and ``component.code`` with how
many Observations carry it, the units and value types its values came in, and what it
feeds:

* the DiPro variable the run's code maps give it;
* or, for a second coding beside a mapped one in the same ``code`` (LOINC 8480-6 with SNOMED
  271649006), that variable *through* the other coding: the value is read already, and
  counts once;
* or, for a panel whose components are mapped (the blood-pressure panel 85354-9), the
  variables of its components;
* or, for an unmapped code, candidate variables ranked by display, unit and value type
  (:mod:`dipro_fhir.mapping.candidates`).

A site then writes a ConceptMap for the codes it wants read, drops it in
``mapping.concept_map_dir``, and runs the command again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dipro_fhir.mapping.candidates import (
    Candidate,
    ValueProfile,
    candidates,
    quantity_unit_seen,
    value_type,
)
from dipro_fhir.mapping.code_maps import CodeMaps

_DISPLAY_CHARS = 60

_Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class CodeCount:
    """One coding seen, how often, what its values looked like, and what it maps to (or might).

    Attributes:
        variable: The variable a code map gives this coding.
        through: For a coding with no variable of its own that always came beside a mapped
            coding of the same ``code``, that coding's variable (its values are read).
        panel_of: For a code whose Observations' components are mapped, their variables.
        values: The units and value types of its values.
        candidates: For an unmapped coding that is neither of the above, ranked candidates.
    """

    system: str
    code: str
    display: str
    observations: int
    variable: str | None
    candidates: tuple[Candidate, ...] = ()
    through: str | None = None
    panel_of: tuple[str, ...] = ()
    values: ValueProfile = field(default_factory=ValueProfile)

    @property
    def token(self) -> str:
        """``system|code``."""
        return f"{self.system}|{self.code}"

    @property
    def unit(self) -> str:
        """The most frequent unit, or ``-``."""
        return self.values.units[0][0] if self.values.units else "-"

    @property
    def value_type(self) -> str:
        """The most frequent value type, ``/`` and the next one when there are several."""
        return "/".join(t for t, _ in self.values.value_types[:2]) or "-"


@dataclass(frozen=True, slots=True)
class CodeInventory:
    """Every coding of a source, and its Observations counted once each.

    Attributes:
        rows: One per coding, most frequent first.
        observations: Observations seen.
        read: Those with at least one mapped code (in ``code`` or a component).
    """

    rows: tuple[CodeCount, ...]
    observations: int
    read: int


@dataclass(slots=True)
class _Tally:
    """What is counted of one coding while the Observations stream by."""

    observations: int = 0
    display: str = ""
    alone: int = 0  # Observations where no other coding of its `code` is mapped
    through: Counter[str] = field(default_factory=Counter)
    components: set[str] = field(default_factory=set)
    units: Counter[str] = field(default_factory=Counter)
    ucum_units: set[str] = field(default_factory=set)
    value_types: Counter[str] = field(default_factory=Counter)

    def add_value(self, element: Mapping[str, Any]) -> None:
        self.value_types[value_type(element)] += 1
        quantity = element.get("valueQuantity")
        seen = quantity_unit_seen(quantity) if isinstance(quantity, Mapping) else None
        if seen is not None:
            self.units[seen[0]] += 1
            if seen[1]:
                self.ucum_units.add(seen[0])

    def profile(self) -> ValueProfile:
        return ValueProfile(
            units=tuple(self.units.most_common()),
            ucum_units=frozenset(self.ucum_units),
            value_types=tuple(self.value_types.most_common()),
        )


def _codings(element: Mapping[str, Any]) -> dict[_Key, str]:
    """Distinct ``(system, code) -> display`` of one element's ``code``."""
    found: dict[_Key, str] = {}
    concept = element.get("code")
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            system = coding.get("system") if isinstance(coding.get("system"), str) else ""
            display = coding.get("display") if isinstance(coding.get("display"), str) else ""
            if display or (str(system), coding["code"]) not in found:
                found[(str(system), coding["code"])] = str(display)
    return found


def _mapped(codings: Mapping[_Key, str], maps: CodeMaps) -> dict[_Key, str]:
    found = {key: maps.variable_of(*key) for key in codings}
    return {key: v.spec.name for key, v in found.items() if v is not None}


def _count(resource: Mapping[str, Any], maps: CodeMaps, tallies: dict[_Key, _Tally]) -> bool:
    """Count one Observation into ``tallies``; whether it has a mapped code."""
    elements = [resource, *(c for c in resource.get("component") or [] if isinstance(c, dict))]
    per_element = [
        (e, codings, _mapped(codings, maps)) for e in elements for codings in [_codings(e)]
    ]
    component_variables = {v for _, _, mapped in per_element[1:] for v in mapped.values()}
    counted: set[_Key] = set()
    for element, codings, mapped in per_element:
        for key, display in codings.items():
            tally = tallies.setdefault(key, _Tally())
            tally.display = tally.display or display
            tally.add_value(element)
            if key in counted:
                continue
            counted.add(key)
            tally.observations += 1
            if key not in mapped and mapped:
                tally.through[next(iter(mapped.values()))] += 1
            elif key not in mapped:
                tally.alone += 1
            if element is resource:
                tally.components |= component_variables
    return any(mapped for _, _, mapped in per_element)


def _row(key: _Key, tally: _Tally, maps: CodeMaps) -> CodeCount:
    mapped = maps.variable_of(*key)
    variable = None if mapped is None else mapped.spec.name
    through = tally.through.most_common(1)[0][0] if tally.through and not tally.alone else None
    panel_of = tuple(sorted(tally.components)) if variable is None else ()
    values = tally.profile()
    wanted = variable is None and through is None and not panel_of
    return CodeCount(
        system=key[0],
        code=key[1],
        display=tally.display,
        observations=tally.observations,
        variable=variable,
        candidates=candidates(key[0], tally.display, values) if wanted else (),
        through=through,
        panel_of=panel_of,
        values=values,
    )


def count_codes(observations: Iterable[Mapping[str, Any]], maps: CodeMaps) -> CodeInventory:
    """Count every coding over a stream of Observations; most frequent first.

    An Observation counts once per distinct coding it carries (a panel's components count
    under their own codes too), and once in :attr:`CodeInventory.read` however many of its
    codings are mapped.
    """
    tallies: dict[_Key, _Tally] = {}
    seen = read = 0
    for resource in observations:
        seen += 1
        read += _count(resource, maps, tallies)
    rows = sorted(
        (_row(key, tally, maps) for key, tally in tallies.items()),
        key=lambda r: (-r.observations, r.token),
    )
    return CodeInventory(rows=tuple(rows), observations=seen, read=read)


def _target(row: CodeCount) -> str:
    if row.variable:
        return row.variable
    if row.through:
        return f"= {row.through} (other coding)"
    if row.panel_of:
        return "panel: " + ", ".join(row.panel_of)
    return "? " + (", ".join(str(c) for c in row.candidates) or "-")


def render_codes(inventory: CodeInventory, limit: int | None = None) -> str:
    """A plain-text table: count, variable (or candidates), unit, value type, code, display.

    Columns are as wide as their widest cell among the rows shown.
    """
    rows = inventory.rows
    shown = rows if limit is None else rows[:limit]
    cells = [(r, _target(r)) for r in shown]
    target_w = max([len("DiPro variable (or ? candidates)"), *(len(t) for _, t in cells)])
    unit_w = max([len("unit"), *(len(r.unit) for r in shown)])
    value_w = max([len("value"), *(len(r.value_type) for r in shown)])
    lines = [
        f"{'count':>8}  {'DiPro variable (or ? candidates)':{target_w}}  {'unit':{unit_w}}  "
        f"{'value':{value_w}}  code  display"
    ]
    for r, target in cells:
        lines.append(
            f"{r.observations:8d}  {target:{target_w}}  {r.unit:{unit_w}}  "
            f"{r.value_type:{value_w}}  {r.token}  {r.display[:_DISPLAY_CHARS]}"
        )
    if limit is not None and len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more codes")
    mapped = sum(1 for r in rows if r.variable)
    through = sum(1 for r in rows if r.through)
    panels = sum(1 for r in rows if r.panel_of)
    lines.append(
        f"{len(rows)} codes, {mapped} mapped, {through} through another coding, {panels} panels "
        f"of mapped components; Observations: {inventory.observations} "
        f"({inventory.read} with a mapped code, {inventory.observations - inventory.read} "
        "without)"
    )
    return "\n".join(lines)


def code_json(row: CodeCount) -> dict[str, Any]:
    """One row as ``codes --json`` prints it."""
    return {
        "system": row.system,
        "code": row.code,
        "display": row.display,
        "observations": row.observations,
        "variable": row.variable,
        "through": row.through,
        "panel_of": list(row.panel_of),
        "unit": None if row.unit == "-" else row.unit,
        "units": {u: n for u, n in row.values.units},
        "value_types": {t: n for t, n in row.values.value_types},
        "candidates": [str(c) for c in row.candidates],
        "candidate_scores": {c.variable: c.score for c in row.candidates},
    }
