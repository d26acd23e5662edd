"""What a Bulk Data ``$export`` asks for (Bulk Data Access IG v2): the kick-off parameters of
one job and the night's jobs.

The extraction reads the context types (:data:`CONTEXT_TYPES`) of each patient in full and
the window types (:data:`WINDOW_TYPES`) only as far back as the window reaches: those are
exported with ``_since`` (:func:`export_requests`), optionally narrowed by a ``_typeFilter``
on the mapped codes (:func:`code_tokens`, :func:`code_filter`). An :class:`ExportRequest`
gives its parameters as a query, or as a ``Parameters`` resource for a ``POST`` kick-off.
Kicking off, polling and cancelling are :mod:`dipro_fhir.fhir.bulk`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

#: Types the extraction reads in full for each patient (no ``_since``: a stay is older).
CONTEXT_TYPES: tuple[str, ...] = ("Patient", "Encounter", "ImagingStudy")
#: Types read only inside the window: exported with ``_since``.
WINDOW_TYPES: tuple[str, ...] = ("Observation",)
#: The output format asked for (``_outputFormat``), and accepted when downloading.
NDJSON = "application/fhir+ndjson"


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """One ``$export`` kick-off.

    Attributes:
        types: ``_type``: the resource types wanted.
        group_id: Export the members of this Group; ``None``: system level (``[base]/$export``).
        since: ``_since``: only resources changed at or after this (timezone-aware) instant.
        type_filters: ``_typeFilter`` searches (``Observation?combo-code=...``).
    """

    types: tuple[str, ...]
    group_id: str | None = None
    since: datetime | None = None
    type_filters: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        """The kick-off path under the FHIR base."""
        return f"Group/{self.group_id}/$export" if self.group_id else "$export"

    def parameters(self, *, with_filters: bool = True) -> dict[str, Any]:
        """The kick-off parameters as a ``Parameters`` resource, for a POST kick-off."""
        parameter: list[dict[str, Any]] = []
        for name, value in self.params(with_filters=with_filters):
            kind = "valueInstant" if name == "_since" else "valueString"
            parameter.append({"name": name, kind: value})
        return {"resourceType": "Parameters", "parameter": parameter}

    def params(self, *, with_filters: bool = True) -> list[tuple[str, str]]:
        """The kick-off query parameters."""
        query = [("_outputFormat", NDJSON), ("_type", ",".join(self.types))]
        if self.since is not None:
            if self.since.tzinfo is None:
                raise ValueError("_since must be timezone-aware")
            query.append(("_since", self.since.isoformat()))
        if with_filters:
            query.extend(("_typeFilter", f) for f in self.type_filters)
        return query


def export_requests(
    *,
    group_id: str | None,
    as_of: datetime,
    window_hours: int,
    watermark: datetime | None,
    observation_filter: str | None,
) -> list[ExportRequest]:
    """The night's export jobs: the context types in full, Observations changed since
    ``min(watermark, as_of) - window_hours`` (an Observation effective in the window was
    last updated at or after its effective time, so it is among them).

    Args:
        group_id: The cohort's Group; ``None`` for a system-level export (sandbox).
        as_of: The run's as-of time.
        window_hours: The extraction window (DiPro's 48 hours).
        watermark: The last successful run's as-of time, if any.
        observation_filter: A ``_typeFilter`` for Observations, if any.
    """
    newest = as_of if watermark is None else min(watermark, as_of)
    since = newest - timedelta(hours=window_hours)
    filters = (observation_filter,) if observation_filter else ()
    return [
        ExportRequest(CONTEXT_TYPES, group_id),
        ExportRequest(WINDOW_TYPES, group_id, since, filters),
    ]


def code_tokens(codes: Iterable[tuple[str | None, str]]) -> list[str]:
    """Search tokens (``system|code``, or ``code`` without a system) of ``(system, code)``
    pairs, such as a code map's entries, sorted."""
    return sorted(f"{system}|{code}" if system else code for system, code in codes)


def code_filter(tokens: Sequence[str]) -> str | None:
    """``Observation?combo-code=<tokens>`` (``code`` or ``component.code``, so panels whose
    components are mapped stay in); ``None`` for no tokens."""
    if not tokens:
        return None
    return "Observation?combo-code=" + ",".join(tokens)


__all__ = [
    "CONTEXT_TYPES",
    "NDJSON",
    "WINDOW_TYPES",
    "ExportRequest",
    "code_filter",
    "code_tokens",
    "export_requests",
]
