"""Structural validation of raw FHIR R4 JSON: the only module that imports ``fhir.resources``.

We use the package's **R4B** models (``fhir.resources.R4B``): R4B keeps R4's resource
shapes for everything we read and write, while the package's default R5 models would
reject or drop fields that R5 renamed (``Encounter.class`` became a list, ...). Validation
happens at the boundary and the caller keeps working with the raw JSON, converting at once
into our own types; the generated models are never passed around.

Reasons in errors and issues name the failing element path and the pydantic error type
only, never the offending value (values can be names or birth dates).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.core.timeline import MappingIssue

ISSUE_CODE = "invalid-resource"


def validate_resource(raw: Mapping[str, Any]) -> None:
    """Check a raw resource against the FHIR R4 (R4B models) structure.

    Raises:
        InvalidResource: With a short reason (element path and error type, no values).
    """
    _parse(raw)


def validate_many(
    raws: Iterable[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[MappingIssue]]:
    """Split resources into the valid ones (kept as raw JSON) and issues for the others.

    Returns:
        The valid resources in input order, and one ``invalid-resource`` MappingIssue per
        invalid resource, naming ``Type/id`` and the reason.
    """
    valid: list[dict[str, Any]] = []
    issues: list[MappingIssue] = []
    for raw in raws:
        try:
            _parse(raw)
        except InvalidResource as exc:
            issues.append(MappingIssue(ISSUE_CODE, resource_label(raw), str(exc)))
        else:
            valid.append(dict(raw))
    return valid, issues


def round_trip(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Parse a resource and dump it back to JSON (the golden round-trip of the tests).

    Raises:
        InvalidResource: When the resource does not validate.
    """
    model = _parse(raw)
    dumped: dict[str, Any] = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def resource_label(raw: Mapping[str, Any]) -> str | None:
    """Return ``Type/id`` of a raw resource, or ``None`` if it has neither."""
    resource_type, resource_id = raw.get("resourceType"), raw.get("id")
    if not isinstance(resource_type, str):
        return None
    return f"{resource_type}/{resource_id}" if isinstance(resource_id, str) else resource_type


def _parse(raw: Mapping[str, Any]) -> Any:
    if not isinstance(raw, Mapping):
        raise InvalidResource("not a JSON object")
    resource_type = raw.get("resourceType")
    if not isinstance(resource_type, str):
        raise InvalidResource("no resourceType")
    try:
        model_class = get_fhir_model_class(resource_type)
    except (KeyError, ValueError) as exc:
        raise InvalidResource(f"unknown resourceType {resource_type!r}") from exc
    try:
        return model_class.model_validate(dict(raw))
    except ValidationError as exc:
        raise InvalidResource(_describe(resource_type, exc)) from None


def _describe(resource_type: str, exc: ValidationError) -> str:
    errors = exc.errors(include_input=False, include_url=False)
    shown = [
        f"{resource_type}.{'.'.join(str(part) for part in error['loc'])}: {error['type']}"
        for error in errors[:3]
    ]
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(shown) + more
