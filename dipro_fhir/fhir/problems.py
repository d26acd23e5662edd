"""Problems of one patient's resources met while a source reads them: duplicate ids, times.

Both FHIR sources pass each patient's resources through :meth:`PatientProblems.screen`:

- ``duplicate-id``: a second resource of one type with an id already seen (an export with a
  repeated line, a server that repeats an entry across pages). The first one read is used,
  the others are skipped, so a re-ordered export can change which one wins; the problem says
  so.
- ``missing-time``: an Observation without a readable ``effective[x]`` (it cannot be placed
  on the timeline and is left out by the window's time filter).
- ``invalid-period``: an Observation's ``effectivePeriod`` or an Encounter's ``period``
  that ends before it starts.
- ``implausible-time``: an Observation dated before 1800 or after 2500 (a sentinel such as
  9999-12-31, a typo): left out.
- ``id-under-two-patients`` (NDJSON): one resource id filed under two patients; used for
  neither (:meth:`PatientProblems.record`).

The problems are kept per patient until :meth:`PatientProblems.take` (the source's
``patient_issues``), so they land on the patient's own timeline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from dipro_fhir.core.timeline import MappingIssue
from dipro_fhir.fhir.matching import time_problem

RESOURCE_REF_LENGTH = 200


class PatientProblems:
    """Collects the problems of each patient's resources (module docstring)."""

    def __init__(self) -> None:
        self._found: defaultdict[str, dict[MappingIssue, None]] = defaultdict(dict)

    def screen(
        self, patient_id: str, resources: Iterable[dict[str, Any]]
    ) -> Iterator[dict[str, Any]]:
        """Yield ``resources`` without repeated ids; record the problems met."""
        seen: set[str] = set()
        for resource in resources:
            rid = resource.get("id")
            ref = f"{resource.get('resourceType')}/{rid}"[:RESOURCE_REF_LENGTH]
            if isinstance(rid, str):
                if rid in seen:
                    detail = "another resource has this id; the first one read is used"
                    self._found[patient_id][MappingIssue("duplicate-id", ref, detail)] = None
                    continue
                seen.add(rid)
            problem = time_problem(resource)
            if problem is not None:
                self._found[patient_id][MappingIssue(problem[0], ref, problem[1])] = None
                if problem[0] == "implausible-time":
                    continue
            yield resource

    def record(self, patient_id: str, issue: MappingIssue) -> None:
        """Keep a problem the source found itself (e.g. an id filed under two patients)."""
        self._found[patient_id][issue] = None

    def take(self, patient_id: str) -> list[MappingIssue]:
        """The problems of ``patient_id`` met so far; they are forgotten."""
        return list(self._found.pop(patient_id, {}))
