"""Who is scored tonight: the cohort rules a hospital chooses (``settings.cohort``).

Hospitals say "inpatient" and "in the ICU" in different ways, so the rule is configurable:

* ``class`` (the default, today's rule): an encounter under way whose ``Encounter.class``
  (R4: one Coding) is one of the configured HL7 v3 ActCode classes, ``IMP``, ``ACUTE``,
  ``ICU`` by default. Local class codes count through a ConceptMap to v3 ActCode (a group
  whose ``target`` is ``http://terminology.hl7.org/CodeSystem/v3-ActCode``).
* ``location``: an encounter under way that is, at the as-of time, in an ICU Location,
  read from ``Encounter.location.location`` (the entry's ``period`` covering the as-of
  time, or, without a period, its ``status`` ``active``). Many hospitals mark ICU stays this
  way, not by class. A Location is an ICU when a ``type`` or ``physicalType`` coding
  matches one of the configured tokens (``[system|]code``, default ``ICU``: v3 RoleCode
  "intensive care unit"), or, for a Location without any ``type`` (MIMIC's carry a name and
  a ``physicalType`` only), when its ``name`` or an ``alias`` matches one of the configured
  name patterns (regular expressions, case-insensitive; default "intensive care",
  "critical care", "ICU" as a word). A rule that finds no ICU Location is logged as a
  warning by the sources (and the night, planning nobody, is an ``empty`` run).
* ``group`` / ``list``: the members of a ``Group`` or ``List`` the hospital maintains
  (planned in :mod:`dipro_fhir.run.pipeline`; ``List.entry.item`` may name Patients or
  Encounters).

Under way (both rules) is :func:`~dipro_fhir.fhir.matching.is_under_way`. When one patient
has several admitted encounters (an ICU stay inside its hospital admission), the innermost
is scored: an encounter another admitted one is ``partOf`` gives way to it, then the latest
start, then the highest id (:func:`one_per_patient`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from dipro_fhir.fhir.matching import (
    ACTIVE_ENCOUNTER_CLASSES,
    is_under_way,
    period_range,
    reference_id,
    subject_id,
)
from dipro_fhir.mapping.concept_map import ACT_CODE_SYSTEM, CodeTable

CohortKind = Literal["class", "location"]
#: Name patterns of ICU Locations without a ``type`` (regular expressions, any case).
DEFAULT_ICU_NAMES: tuple[str, ...] = (r"intensive care", r"critical care", r"\bICU\b")


def _empty_class_map() -> CodeTable:
    return CodeTable(ACT_CODE_SYSTEM)


@dataclass(frozen=True, slots=True)
class CohortRule:
    """An encounter rule (``class`` or ``location``); see the module doc."""

    kind: CohortKind = "class"
    classes: frozenset[str] = ACTIVE_ENCOUNTER_CLASSES
    class_map: CodeTable = field(default_factory=_empty_class_map)
    location_types: tuple[str, ...] = ("ICU",)
    location_names: tuple[str, ...] = DEFAULT_ICU_NAMES

    def is_icu(self, location: Mapping[str, Any]) -> bool:
        """Whether a Location is an ICU under this rule (module doc)."""
        return location_matches(location, self.location_types, self.location_names)

    def describe_locations(self) -> str:
        """The rule's Location tests in words, for the warning when none matches."""
        names = ", ".join(repr(n) for n in self.location_names) or "none"
        return f"type or physicalType in {list(self.location_types)}, untyped names {names}"

    def class_codes(self, encounter: Mapping[str, Any]) -> set[str]:
        """The v3 ActCode classes of ``Encounter.class``: the code itself (as today's rule
        reads it, whatever its system) and its translation through the class map."""
        klass = encounter.get("class")
        if not isinstance(klass, Mapping) or not isinstance(klass.get("code"), str):
            return set()
        codes = {str(klass["code"])}
        found = self.class_map.lookup(klass.get("system"), klass.get("code"))
        if found is not None:
            codes.add(found.target_code)
        return codes

    def class_tokens(self) -> list[str]:
        """Search tokens for ``Encounter?class=``: the classes and every local code that
        the class map translates into one of them."""
        local = [
            f"{t.source_system}|{t.source_code}" if t.source_system else t.source_code
            for t in self.class_map.entries.values()
            if t.target_code in self.classes
        ]
        return sorted(self.classes) + sorted(set(local))

    def admits(
        self, encounter: Mapping[str, Any], as_of: datetime, icu_locations: Iterable[str] = ()
    ) -> bool:
        """Whether the encounter belongs to the cohort at ``as_of``.

        Args:
            encounter: The Encounter (raw JSON).
            as_of: The scoring time.
            icu_locations: Ids of the Locations whose type matches (``location`` rule).
        """
        if not is_under_way(encounter, as_of):
            return False
        if self.kind == "class":
            return bool(self.class_codes(encounter) & self.classes)
        return bool(set(current_locations(encounter, as_of)) & set(icu_locations))


DEFAULT_RULE = CohortRule()


def current_locations(encounter: Mapping[str, Any], as_of: datetime) -> list[str]:
    """Location ids of ``Encounter.location`` entries the patient is in at ``as_of``."""
    found: list[str] = []
    for entry in encounter.get("location") or []:
        if not isinstance(entry, Mapping):
            continue
        ref = entry.get("location")
        location_id = (
            reference_id(ref.get("reference"), "Location") if isinstance(ref, Mapping) else None
        )
        span = period_range(entry.get("period"))
        here = span[0] <= as_of < span[1] if span else entry.get("status") in (None, "active")
        if location_id is not None and here:
            found.append(location_id)
    return found


def location_has_type(location: Mapping[str, Any], tokens: Sequence[str]) -> bool:
    """Whether any ``Location.type`` or ``physicalType`` coding matches a token
    (``system|code`` or ``code``)."""
    return any(any(_token(t, c) for t in tokens) for c in _location_codings(location))


def location_matches(
    location: Mapping[str, Any], tokens: Sequence[str], name_patterns: Sequence[str]
) -> bool:
    """An ICU Location: a matching type or physicalType coding, or, without any ``type``,
    a ``name`` or ``alias`` that matches a pattern (module doc)."""
    if location_has_type(location, tokens):
        return True
    if _location_codings(location, ("type",)):
        return False  # a typed Location is decided by its type
    names = [location.get("name"), *(location.get("alias") or [])]
    return any(
        isinstance(name, str) and re.search(pattern, name, re.IGNORECASE)
        for pattern in name_patterns
        for name in names
    )


def _location_codings(
    location: Mapping[str, Any], fields: Sequence[str] = ("type", "physicalType")
) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    for name in fields:
        value = location.get(name)
        concepts = value if isinstance(value, list) else [value]  # physicalType is one
        for concept in concepts:
            codings = concept.get("coding") if isinstance(concept, Mapping) else None
            found.extend(c for c in codings or [] if isinstance(c, Mapping))
    return found


def _token(token: str, coding: Mapping[str, Any]) -> bool:
    system, _, code = token.rpartition("|")
    return coding.get("code") == code and (not system or coding.get("system") == system)


def _parent_id(encounter: Mapping[str, Any]) -> str | None:
    part_of = encounter.get("partOf")
    return (
        reference_id(part_of.get("reference"), "Encounter")
        if isinstance(part_of, Mapping)
        else None
    )


def _start_key(encounter: Mapping[str, Any]) -> tuple[str, str]:
    span = period_range(encounter.get("period"))
    return (span[0].isoformat() if span else "", str(encounter.get("id")))


def choose_encounter(encounters: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The one of a patient's admitted encounters to score (innermost, latest, highest id)."""
    parents = {_parent_id(e) for e in encounters}
    inner = [e for e in encounters if e.get("id") not in parents] or list(encounters)
    return max(inner, key=_start_key) if inner else None


def one_per_patient(
    encounters: Iterable[Mapping[str, Any]],
    subject: Callable[[Any], str | None] = subject_id,
) -> list[tuple[str, str]]:
    """``(patient_id, encounter_id)`` of the encounter to score per patient, sorted.

    ``subject`` reads an encounter's Patient id (a source may resolve more than literal
    ``Patient/<id>`` references).
    """
    by_patient: dict[str, list[Mapping[str, Any]]] = {}
    for encounter in encounters:
        patient_id = subject(encounter)
        if patient_id is not None and isinstance(encounter.get("id"), str):
            by_patient.setdefault(patient_id, []).append(encounter)
    pairs = []
    for patient_id, found in by_patient.items():
        chosen = choose_encounter(found)
        if chosen is not None:
            pairs.append((patient_id, str(chosen["id"])))
    return sorted(pairs)
