"""A run's data-quality summary: what the data held that scoring could not use.

Nothing vanishes unreported (issue 10): each run records, with *no patient data* in it (codes,
variable names, reason codes and counts only):

* ``unmapped_codes``: Observations in the scored patients' windows whose codes no code map
  knows, counted per code. An Observation counts once, under its first coding
  (``Observation.code.coding[0]``, ``system|code``); one without a coding under
  :data:`NO_CODE`. ``code_displays`` keeps a coding display per code, for people.
* coverage: per variable, the share of mapped patients with at least one value in the
  window (``PatientTimeline.ehr_mask``).
* ``image_problems``: radiographs or studies that gave no usable image, by reason
  (:data:`IMAGE_UNUSABLE`).
* ``image_flags``: radiographs used with a flag on how their regions were placed, by code
  (:data:`IMAGE_FLAGGED`: a white lung placed from its thorax outline).
* ``unattributed_problems``: data problems that belong to no patient that can be told
  (a line that is not JSON, a reference that resolves to nobody), by code.

Summaries of chunks merge (:meth:`DataQuality.merged`); a night is compared with the
previous successful one (:func:`compare`). Pure: counts in, counts out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from dipro.vocab import VARIABLES
from dipro_fhir.core.timeline import MappingIssue, PatientTimeline

#: The key of Observations that carry no coding at all.
NO_CODE: Final[str] = "(no code)"
#: Issue codes that mean an image (or a whole study) could not be used.
IMAGE_UNUSABLE: Final[frozenset[str]] = frozenset(
    {
        "no-study-uid",
        "image-missing",
        "no-frontal-image",
        "corrupt-dicom",
        "image-too-large",
        "patient-mismatch",
        "missing-acquisition-time",
        "regions-not-found",
        "regions-qc-film",
        "after-as-of",
    }
)
#: Issue codes of radiographs that are used, with regions placed less surely than usual.
IMAGE_FLAGGED: Final[frozenset[str]] = frozenset({"regions-from-thorax"})
#: Smallest coverage change (share of patients) worth reporting between two nights.
COVERAGE_CHANGE: Final[float] = 0.05
_DISPLAY_CHARS: Final[int] = 80


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(sorted(mapping.items())))


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class DataQuality:
    """Counts of what could not be used, for a chunk or a whole run (see module doc)."""

    patients: int = 0
    unmapped_codes: Mapping[str, int] = field(default_factory=_empty)
    code_displays: Mapping[str, str] = field(default_factory=_empty)
    variable_patients: Mapping[str, int] = field(default_factory=_empty)
    image_problems: Mapping[str, int] = field(default_factory=_empty)
    unattributed_problems: Mapping[str, int] = field(default_factory=_empty)
    image_flags: Mapping[str, int] = field(default_factory=_empty)

    def coverage(self) -> dict[str, float]:
        """Per variable (``dipro.vocab`` order): share of patients with >= 1 value."""
        if self.patients == 0:
            return dict.fromkeys(VARIABLES, 0.0)
        return {v: self.variable_patients.get(v, 0) / self.patients for v in VARIABLES}

    @property
    def unmapped_observations(self) -> int:
        """Observations not mapped, all codes together."""
        return sum(self.unmapped_codes.values())

    def merged(self, other: DataQuality) -> DataQuality:
        """The sum of two summaries (displays: the first one seen wins)."""

        def add(a: Mapping[str, int], b: Mapping[str, int]) -> Mapping[str, Any]:
            return _frozen(Counter(a) + Counter(b))

        return DataQuality(
            patients=self.patients + other.patients,
            unmapped_codes=add(self.unmapped_codes, other.unmapped_codes),
            code_displays=_frozen({**other.code_displays, **self.code_displays}),
            variable_patients=add(self.variable_patients, other.variable_patients),
            image_problems=add(self.image_problems, other.image_problems),
            unattributed_problems=add(self.unattributed_problems, other.unattributed_problems),
            image_flags=add(self.image_flags, other.image_flags),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for chunk manifests and the run summary)."""
        return {
            "patients": self.patients,
            "unmapped_codes": dict(self.unmapped_codes),
            "code_displays": dict(self.code_displays),
            "variable_patients": dict(self.variable_patients),
            "image_problems": dict(self.image_problems),
            "unattributed_problems": dict(self.unattributed_problems),
            "image_flags": dict(self.image_flags),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DataQuality:
        """Read :meth:`to_json`'s dict (``None`` or ``{}`` give an empty summary)."""
        data = data or {}

        def counts(key: str) -> Mapping[str, Any]:
            return _frozen({str(k): int(v) for k, v in (data.get(key) or {}).items()})

        return cls(
            patients=int(data.get("patients", 0)),
            unmapped_codes=counts("unmapped_codes"),
            code_displays=_frozen(
                {str(k): str(v) for k, v in (data.get("code_displays") or {}).items()}
            ),
            variable_patients=counts("variable_patients"),
            image_problems=counts("image_problems"),
            unattributed_problems=counts("unattributed_problems"),
            image_flags=counts("image_flags"),
        )


def observation_code(resource: Mapping[str, Any]) -> tuple[str, str]:
    """``(system|code, display)`` of an Observation's first coding (``Observation.code``)."""
    concept = resource.get("code") if isinstance(resource, Mapping) else None
    codings = concept.get("coding") if isinstance(concept, Mapping) else None
    first = codings[0] if isinstance(codings, list) and codings else None
    if not isinstance(first, Mapping) or not isinstance(first.get("code"), str):
        return NO_CODE, ""
    system = first.get("system") if isinstance(first.get("system"), str) else ""
    display = first.get("display") if isinstance(first.get("display"), str) else ""
    return f"{system}|{first['code']}", str(display)[:_DISPLAY_CHARS]


def unmapped_quality(observations: Iterable[Mapping[str, Any]]) -> DataQuality:
    """Count Observations no code map knows, per first coding (the caller filters)."""
    codes: Counter[str] = Counter()
    displays: dict[str, str] = {}
    for resource in observations:
        token, display = observation_code(resource)
        codes[token] += 1
        if display:
            displays.setdefault(token, display)
    return DataQuality(unmapped_codes=_frozen(codes), code_displays=_frozen(displays))


def timeline_quality(timeline: PatientTimeline) -> DataQuality:
    """One mapped patient: the variables it has values of, and its unusable images."""
    mask = timeline.ehr_mask
    observed: list[bool] = (
        [bool(mask[:, j].any()) for j in range(mask.shape[1])] if mask.ndim == 2 else []
    )
    variables = {v: 1 for v, seen in zip(VARIABLES, observed, strict=False) if seen}
    images = Counter(i.code for i in timeline.issues if i.code in IMAGE_UNUSABLE)
    flags = Counter(i.code for i in timeline.issues if i.code in IMAGE_FLAGGED)
    return DataQuality(
        patients=1,
        variable_patients=_frozen(variables),
        image_problems=_frozen(images),
        image_flags=_frozen(flags),
    )


def unattributed_quality(issues: Iterable[MappingIssue]) -> DataQuality:
    """Problems of no patient, counted by code (the caller removes repeats)."""
    return DataQuality(unattributed_problems=_frozen(Counter(i.code for i in issues)))


@dataclass(frozen=True, slots=True)
class QualityChange:
    """Tonight against the previous successful night.

    Attributes:
        previous_run: The run compared with.
        patients_change: Mapped patients now minus then.
        unmapped_change: Unmapped Observations now minus then.
        new_unmapped_codes: Codes unmapped now that were not unmapped then.
        coverage_change: Variables whose coverage moved by at least
            :data:`COVERAGE_CHANGE` (now minus then).
        image_problem_change: Per reason, unusable images now minus then (non-zero only).
    """

    previous_run: str
    patients_change: int
    unmapped_change: int
    new_unmapped_codes: tuple[str, ...]
    coverage_change: Mapping[str, float]
    image_problem_change: Mapping[str, int]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict."""
        return {
            "previous_run": self.previous_run,
            "patients_change": self.patients_change,
            "unmapped_change": self.unmapped_change,
            "new_unmapped_codes": list(self.new_unmapped_codes),
            "coverage_change": dict(self.coverage_change),
            "image_problem_change": dict(self.image_problem_change),
        }


def compare(current: DataQuality, previous: DataQuality, previous_run: str) -> QualityChange:
    """How tonight's summary differs from the previous successful night's."""
    now, then = current.coverage(), previous.coverage()
    moved = {
        v: round(now[v] - then[v], 4) for v in VARIABLES if abs(now[v] - then[v]) >= COVERAGE_CHANGE
    }
    images = Counter(current.image_problems)
    images.subtract(previous.image_problems)
    return QualityChange(
        previous_run=previous_run,
        patients_change=current.patients - previous.patients,
        unmapped_change=current.unmapped_observations - previous.unmapped_observations,
        new_unmapped_codes=tuple(
            sorted(set(current.unmapped_codes) - set(previous.unmapped_codes))
        ),
        coverage_change=_frozen(moved),
        image_problem_change=_frozen({k: v for k, v in images.items() if v}),
    )


def render_quality(quality: DataQuality, change: QualityChange | None = None, top: int = 10) -> str:
    """A short plain-text summary (terminal, run summary, report)."""
    lines = [f"data quality    {quality.patients} patients mapped"]
    codes = Counter(quality.unmapped_codes).most_common(top)
    lines.append(
        f"unmapped codes  {quality.unmapped_observations} Observations, "
        f"{len(quality.unmapped_codes)} codes" + (":" if codes else "")
    )
    for token, count in codes:
        display = quality.code_displays.get(token, "")
        lines.append(f"  {count:7d}  {token}" + (f"  ({display})" if display else ""))
    coverage = sorted(quality.coverage().items(), key=lambda kv: kv[1])
    seen = [f"{v} {share:.0%}" for v, share in coverage if share > 0]
    lines.append(f"coverage        {len(seen)} of {len(VARIABLES)} variables seen")
    lines.append("  " + (", ".join(reversed(seen)) if seen else "no variable has a value"))
    images = ", ".join(f"{k} {v}" for k, v in sorted(quality.image_problems.items()))
    lines.append(f"images unusable {images or 'none'}")
    if quality.image_flags:
        flagged = ", ".join(f"{k} {v}" for k, v in sorted(quality.image_flags.items()))
        lines.append(f"images flagged  {flagged}")
    orphans = ", ".join(f"{k} {v}" for k, v in sorted(quality.unattributed_problems.items()))
    lines.append(f"no patient      {orphans or 'no problems without a patient'}")
    if change is not None:
        lines.append(_render_change(change))
    return "\n".join(lines)


def _render_change(change: QualityChange) -> str:
    moved = ", ".join(f"{v} {d:+.0%}" for v, d in change.coverage_change.items()) or "none"
    new = ", ".join(change.new_unmapped_codes[:5]) or "none"
    more = f" (+{len(change.new_unmapped_codes) - 5})" if len(change.new_unmapped_codes) > 5 else ""
    return (
        f"vs {change.previous_run}: patients {change.patients_change:+d}, unmapped "
        f"Observations {change.unmapped_change:+d}, new unmapped codes {new}{more}; "
        f"coverage moved: {moved}"
    )
