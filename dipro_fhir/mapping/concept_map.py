"""FHIR R4 ``ConceptMap`` resources as the one mechanism that turns site codes into DiPro's.

Every code translation the product makes is data, not code: the LOINC codes of the 38 EHR
variables, a site's local lab and flowsheet codes, MIMIC-IV item ids, discharge dispositions
that mean a death, local encounter classes. Each is a ConceptMap (FHIR R4 §ConceptMap) whose
``group.target`` names what it maps *to*:

* :data:`VARIABLE_SYSTEM`: DiPro's variables (codes are the names in ``dipro.vocab``);
* :data:`OUTCOME_SYSTEM`: discharge outcomes (``died``);
* :data:`ACT_CODE_SYSTEM`: HL7 v3 ActCode encounter classes (``IMP``, ``ACUTE``, ``ICU``).

Elements read (R4 paths): ``ConceptMap.url``/``version`` (provenance),
``group.source`` (the code system of ``element.code``; a group *without* ``source`` matches
its codes in any system, ignoring case: local codes such as ``DIED`` arrive under many local
systems), ``group.target``, ``group.element.code``/``display``, ``element.target.code`` and
``target.equivalence`` (``unmatched`` and ``disjoint`` mean "no mapping" and are skipped),
and ``target.product`` with property :data:`UNIT_PROPERTY`: the UCUM unit the site records
the source code in.

Maps are merged in order; a later map's element for the same source code replaces an
earlier one, so a site's folder overrides the shipped maps. Within one map a source code
with two different targets is an error (:class:`ConceptMapError`), raised at load time.
Pure: JSON in, frozen dataclasses out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from dipro_fhir.core.errors import ConfigError

BASE: Final[str] = "https://dipro-fhir.example.org"
VARIABLE_SYSTEM: Final[str] = f"{BASE}/CodeSystem/dipro-variable"
OUTCOME_SYSTEM: Final[str] = f"{BASE}/CodeSystem/discharge-outcome"
ACT_CODE_SYSTEM: Final[str] = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
#: ``ConceptMap.group.element.target.product.property`` naming the source code's unit.
UNIT_PROPERTY: Final[str] = f"{BASE}/StructureDefinition/source-unit"
#: R4 ConceptMapEquivalence values that say "this is not a mapping".
NO_MAPPING: Final[frozenset[str]] = frozenset({"unmatched", "disjoint"})
#: The system key of codes from a group without ``source`` (any system, case-insensitive).
ANY_SYSTEM: Final[str] = ""


class ConceptMapError(ConfigError):
    """A ConceptMap is malformed or contradicts itself; fix the map and run again."""


@dataclass(frozen=True, slots=True)
class Translation:
    """One source code and what it means.

    Attributes:
        source_system: ``group.source``, or :data:`ANY_SYSTEM` for a group without one.
        source_code: ``element.code`` (case-folded when the system is :data:`ANY_SYSTEM`).
        target_system: ``group.target``.
        target_code: ``element.target.code``.
        unit: The UCUM unit of the source code's values (``target.product``), if given.
        display: ``element.display``, for people and for finding candidates.
        concept_map: ``url|version`` of the map the translation came from.
    """

    source_system: str
    source_code: str
    target_system: str
    target_code: str
    unit: str | None = None
    display: str = ""
    concept_map: str = ""


@dataclass(frozen=True, slots=True)
class CodeTable:
    """The merged translations into one target system, looked up by source coding.

    Attributes:
        target_system: What the table maps to (:data:`VARIABLE_SYSTEM`, ...).
        entries: ``(system, code)`` -> translation, in the order the maps listed them.
        maps: ``url|version`` of every ConceptMap merged, in order.
    """

    target_system: str
    entries: Mapping[tuple[str, str], Translation] = field(
        default_factory=lambda: MappingProxyType({})
    )
    maps: tuple[str, ...] = ()

    def lookup(self, system: object, code: object) -> Translation | None:
        """The translation of one ``Coding`` (system and code), or ``None``."""
        if not isinstance(code, str) or not code:
            return None
        if isinstance(system, str) and system:
            found = self.entries.get((system, code))
            if found is not None:
                return found
        return self.entries.get((ANY_SYSTEM, code.casefold()))

    def sources_of(self, target_code: str) -> tuple[Translation, ...]:
        """Every source code that maps to ``target_code``, in map order."""
        return tuple(t for t in self.entries.values() if t.target_code == target_code)


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else ()


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def map_label(resource: Mapping[str, Any]) -> str:
    """``url|version`` of a ConceptMap (``id`` when it has no canonical URL)."""
    url = resource.get("url") or f"ConceptMap/{resource.get('id', '?')}"
    version = resource.get("version")
    return f"{url}|{version}" if isinstance(version, str) and version else str(url)


def _unit(target: Mapping[str, Any]) -> str | None:
    for product in _list(target.get("product")):
        item = _dict(product)
        if item.get("property") == UNIT_PROPERTY and isinstance(item.get("value"), str):
            return str(item["value"])
    return None


def _element_translations(
    element: Mapping[str, Any], source: str, target_system: str, label: str
) -> list[Translation]:
    code = element.get("code")
    if not isinstance(code, str) or not code:
        raise ConceptMapError(f"{label}: an element has no code")
    key_code = code.casefold() if source == ANY_SYSTEM else code
    display = element.get("display")
    found = []
    for target in (_dict(t) for t in _list(element.get("target"))):
        if target.get("equivalence") in NO_MAPPING or not isinstance(target.get("code"), str):
            continue
        found.append(
            Translation(
                source_system=source,
                source_code=key_code,
                target_system=target_system,
                target_code=str(target["code"]),
                unit=_unit(target),
                display=display if isinstance(display, str) else "",
                concept_map=label,
            )
        )
    return found


def read_concept_map(resource: Mapping[str, Any]) -> list[Translation]:
    """Read every translation of one FHIR R4 ConceptMap (raw JSON), in element order.

    Raises:
        ConceptMapError: Not a ConceptMap, a group without ``target``, an element without a
            code, or one source code mapped to two different targets.
    """
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "ConceptMap":
        raise ConceptMapError("not a ConceptMap resource")
    label = map_label(resource)
    translations: list[Translation] = []
    seen: dict[tuple[str, str, str], str] = {}
    for group in (_dict(g) for g in _list(resource.get("group"))):
        target_system = group.get("target")
        if not isinstance(target_system, str) or not target_system:
            raise ConceptMapError(f"{label}: a group has no target system")
        source = group.get("source") if isinstance(group.get("source"), str) else ANY_SYSTEM
        for element in (_dict(e) for e in _list(group.get("element"))):
            for t in _element_translations(element, str(source), target_system, label):
                key = (t.source_system, t.source_code, t.target_system)
                if seen.setdefault(key, t.target_code) != t.target_code:
                    raise ConceptMapError(
                        f"{label}: {t.source_system or '*'}|{t.source_code} maps to both "
                        f"{seen[key]} and {t.target_code}"
                    )
                translations.append(t)
    return translations


def code_table(target_system: str, concept_maps: Iterable[Mapping[str, Any]]) -> CodeTable:
    """Merge the translations into ``target_system`` of several maps; later maps win.

    Raises:
        ConceptMapError: A map is malformed (see :func:`read_concept_map`).
    """
    entries: dict[tuple[str, str], Translation] = {}
    labels: list[str] = []
    for resource in concept_maps:
        found = [t for t in read_concept_map(resource) if t.target_system == target_system]
        if not found:
            continue
        labels.append(map_label(resource))
        for t in found:
            entries.pop((t.source_system, t.source_code), None)  # a later map re-orders too
            entries[(t.source_system, t.source_code)] = t
    return CodeTable(target_system, MappingProxyType(entries), tuple(labels))
