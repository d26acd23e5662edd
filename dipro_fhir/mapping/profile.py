"""The inputs a model saw, summarised: what drift is measured on before labels arrive.

An :class:`InputProfile` holds counts only (no patient data), for a night's scored patients
or for a reference population (a checkpoint's held-out patients, the first nights of a
site), so two profiles compare term by term (:mod:`dipro_fhir.monitoring.drift`):

* ``patients`` and, per variable, the patients with at least one value in the window
  (coverage);
* per variable, a histogram of each patient's median value in the window, in units of the
  checkpoint's own z-scoring (``(value - mean) / std`` of its preprocessing record), over
  the fixed edges :data:`Z_EDGES` with open ends: a unit switch or a recalibrated analyser
  moves values across bins whatever the variable's scale;
* ``observations``: the Observations the timelines were built from (the denominator of the
  share of unmapped ones, counted apart by data quality);
* films used, and films unusable by reason (``dipro_fhir.mapping.quality.IMAGE_UNUSABLE``
  without ``after-as-of``, which is about time, not the film);
* ``pairs``: patients scored on the CXR-pair path (two films or more).

Profiles of chunks merge by adding. Pure: timelines in, counts out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from dipro.vocab import VARIABLES
from dipro_fhir.core.timeline import PatientTimeline
from dipro_fhir.mapping.quality import IMAGE_UNUSABLE

PROFILE_KIND: Final[str] = "dipro-fhir/input-profile/1"
#: Bin edges in z units: 17 edges, 18 bins (the first and last open).
Z_EDGES: Final[tuple[float, ...]] = tuple(float(z) for z in np.arange(-4.0, 4.01, 0.5))
BINS: Final[int] = len(Z_EDGES) + 1
#: Film problems counted as unusable films (a film acquired after the as-of time is not one).
FILM_PROBLEMS: Final[frozenset[str]] = IMAGE_UNUSABLE - {"after-as-of"}


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted(mapping.items())))


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class InputProfile:
    """Counts of what the model saw (see the module docstring)."""

    patients: int = 0
    variable_patients: Mapping[str, int] = field(default_factory=_empty)
    histograms: Mapping[str, tuple[int, ...]] = field(default_factory=_empty)
    observations: int = 0
    films_used: int = 0
    films_unusable: Mapping[str, int] = field(default_factory=_empty)
    pairs: int = 0

    def coverage(self, variable: str) -> float:
        """Share of patients with a value of ``variable`` (0 without patients)."""
        return self.variable_patients.get(variable, 0) / self.patients if self.patients else 0.0

    def histogram(self, variable: str) -> tuple[int, ...]:
        """The variable's counts per bin (zeros when it was never seen)."""
        return self.histograms.get(variable, (0,) * BINS)

    @property
    def films(self) -> int:
        """Films met: used and unusable."""
        return self.films_used + sum(self.films_unusable.values())

    def merged(self, other: InputProfile) -> InputProfile:
        """The sum of two profiles."""
        histograms = {
            v: tuple(a + b for a, b in zip(self.histogram(v), other.histogram(v), strict=True))
            for v in set(self.histograms) | set(other.histograms)
        }
        return InputProfile(
            patients=self.patients + other.patients,
            variable_patients=_frozen(
                Counter(self.variable_patients) + Counter(other.variable_patients)
            ),
            histograms=_frozen(histograms),
            observations=self.observations + other.observations,
            films_used=self.films_used + other.films_used,
            films_unusable=_frozen(Counter(self.films_unusable) + Counter(other.films_unusable)),
            pairs=self.pairs + other.pairs,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (chunk manifests, the ``input_profiles`` table, model cards)."""
        return {
            "kind": PROFILE_KIND,
            "z_edges": list(Z_EDGES),
            "patients": self.patients,
            "variable_patients": dict(self.variable_patients),
            "histograms": {v: list(h) for v, h in self.histograms.items()},
            "observations": self.observations,
            "films_used": self.films_used,
            "films_unusable": dict(self.films_unusable),
            "pairs": self.pairs,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> InputProfile:
        """Read :meth:`to_json`'s dict (``None`` or ``{}``: an empty profile).

        Raises:
            ValueError: Another kind of record, or other bin edges.
        """
        if not data:
            return cls()
        if data.get("kind") != PROFILE_KIND or tuple(data.get("z_edges", ())) != Z_EDGES:
            raise ValueError("not an input profile of this version (kind or bin edges differ)")
        histograms = {str(k): tuple(int(c) for c in v) for k, v in data["histograms"].items()}
        seen = {str(k): int(v) for k, v in data["variable_patients"].items()}
        return cls(
            patients=int(data["patients"]),
            variable_patients=_frozen(seen),
            histograms=_frozen(histograms),
            observations=int(data["observations"]),
            films_used=int(data["films_used"]),
            films_unusable=_frozen({str(k): int(v) for k, v in data["films_unusable"].items()}),
            pairs=int(data["pairs"]),
        )  # fmt: skip


def profile_timeline(
    timeline: PatientTimeline, mean: Sequence[float], std: Sequence[float]
) -> InputProfile:
    """One patient's profile, values z-scored with the checkpoint's ``mean`` and ``std``."""
    values = np.where(timeline.ehr_mask, timeline.ehr_values, np.nan).astype(np.float64)
    mask = timeline.ehr_mask
    seen = [bool(mask[:, j].any()) for j in range(mask.shape[1])] if mask.ndim == 2 else []
    variables: dict[str, int] = {}
    histograms: dict[str, tuple[int, ...]] = {}
    for j, name in enumerate(VARIABLES):
        if j >= len(seen) or not seen[j]:
            continue
        variables[name] = 1
        z = (float(np.nanmedian(values[:, j])) - mean[j]) / (std[j] or 1.0)
        counts = [0] * BINS
        counts[int(np.searchsorted(Z_EDGES, z, side="right"))] = 1
        histograms[name] = tuple(counts)
    unusable = Counter(i.code for i in timeline.issues if i.code in FILM_PROBLEMS)
    return InputProfile(
        patients=1,
        variable_patients=_frozen(variables),
        histograms=_frozen(histograms),
        observations=sum(1 for r in timeline.provenance if r.resource_type == "Observation"),
        films_used=len(timeline.images),
        films_unusable=_frozen(unusable),
        pairs=int(len(timeline.images) >= 2),
    )


def profile_timelines(
    timelines: Iterable[PatientTimeline], mean: Sequence[float], std: Sequence[float]
) -> InputProfile:
    """The profile of several patients."""
    total = InputProfile()
    for timeline in timelines:
        total = total.merged(profile_timeline(timeline, mean, std))
    return total
