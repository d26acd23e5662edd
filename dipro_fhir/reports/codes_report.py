"""Which Observation codes a source holds: ``dipro-fhir codes``, a site's day-one command.

It streams every Observation of the configured FHIR source (a server through paged
searches, or NDJSON files line by line; only a count per distinct code is kept, never the
cohort) and lists each coding seen in ``Observation.code`` and ``component.code`` with how
many Observations carry it, the DiPro variable the run's code maps give it, and for an
unmapped code the candidate variables by LOINC component or display text
(:mod:`dipro_fhir.mapping.candidates`). A site then writes a ConceptMap for the codes it
wants read, drops it in ``mapping.concept_map_dir``, and runs the command again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dipro_fhir.mapping.candidates import Candidate, candidates
from dipro_fhir.mapping.code_maps import CodeMaps

_DISPLAY_CHARS = 60


@dataclass(frozen=True, slots=True)
class CodeCount:
    """One coding seen, how often, and what it maps to (or might)."""

    system: str
    code: str
    display: str
    observations: int
    variable: str | None
    candidates: tuple[Candidate, ...] = ()

    @property
    def token(self) -> str:
        """``system|code``."""
        return f"{self.system}|{self.code}"


def _codings(resource: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """Distinct ``(system, code, display)`` of ``code`` and ``component.code``."""
    found: set[tuple[str, str, str]] = set()
    elements = [resource, *(c for c in resource.get("component") or [] if isinstance(c, dict))]
    for element in elements:
        concept = element.get("code")
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                system = coding.get("system") if isinstance(coding.get("system"), str) else ""
                display = coding.get("display") if isinstance(coding.get("display"), str) else ""
                found.add((str(system), coding["code"], str(display)))
    return found


def count_codes(observations: Iterable[Mapping[str, Any]], maps: CodeMaps) -> list[CodeCount]:
    """Count every coding over a stream of Observations; most frequent first.

    An Observation counts once per distinct coding it carries (a panel's components count
    under their own codes too).
    """
    counts: Counter[tuple[str, str]] = Counter()
    displays: dict[tuple[str, str], str] = {}
    for resource in observations:
        seen = {(s, c) for s, c, _ in _codings(resource)}
        counts.update(seen)
        for system, code, display in _codings(resource):
            if display:
                displays.setdefault((system, code), display)
    rows = []
    for (system, code), n in counts.most_common():
        display = displays.get((system, code), "")
        variable = maps.variable_of(system, code)
        rows.append(
            CodeCount(
                system=system,
                code=code,
                display=display,
                observations=n,
                variable=None if variable is None else variable.spec.name,
                candidates=() if variable is not None else candidates(system, display),
            )
        )
    return sorted(rows, key=lambda r: (-r.observations, r.token))


def render_codes(rows: list[CodeCount], limit: int | None = None) -> str:
    """A plain-text table: count, variable (or candidates), code, display."""
    shown = rows if limit is None else rows[:limit]
    mapped = sum(r.observations for r in rows if r.variable)
    total = sum(r.observations for r in rows)
    lines = [f"{'count':>8}  {'DiPro variable (or ? candidates)':36}  code  display"]
    for r in shown:
        target = r.variable or "? " + (", ".join(str(c) for c in r.candidates) or "-")
        display = r.display[:_DISPLAY_CHARS]
        lines.append(f"{r.observations:8d}  {target:36}  {r.token}  {display}")
    if limit is not None and len(rows) > limit:
        lines.append(f"... {len(rows) - limit} more codes")
    unmapped = [r for r in rows if not r.variable]
    lines.append(
        f"{len(rows)} codes, {len(rows) - len(unmapped)} mapped; codings counted: {total} "
        f"({mapped} mapped, {total - mapped} not)"
    )
    return "\n".join(lines)
