"""Input limits: what one resource, response or image may be before it is refused as data.

A hostile or broken source must not exhaust the run: JSON nested 100,000 levels deep makes
Python's parser raise ``RecursionError``, one oversized resource or image can take gigabytes.
Every limit here is a setting (:class:`~dipro_fhir.core.settings.LimitSettings`) with a sane
default; a breach raises :class:`InputLimitExceeded`, an
:class:`~dipro_fhir.core.errors.InvalidResource`, which the pipeline records as a data problem of
the patient (or of no patient) and goes on.

Ids: the FHIR R4 ``id`` datatype is 1-64 characters of ``[A-Za-z0-9\\-\\.]``
(http://hl7.org/fhir/R4/datatypes.html#id). Every entry point checks ids with
:func:`is_fhir_id` before they reach a URL or the database; the database columns hold 64.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from dipro_fhir.core.errors import InvalidResource

FHIR_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")


class InputLimitExceeded(InvalidResource):
    """An input breached a configured limit (nesting depth, size, pixels)."""


@dataclass(frozen=True, slots=True)
class InputLimits:
    """The limits of one run (defaults fit real FHIR data and chest radiographs).

    Attributes:
        max_json_depth: Deepest nesting of objects and arrays in one JSON document (a FHIR
            searchset Bundle of Observations nests about 10 levels).
        max_resource_bytes: Largest NDJSON line (one resource).
        max_response_bytes: Largest HTTP response body (one FHIR page or DICOMweb answer).
        max_image_pixels: Most pixels (Rows x Columns) of one radiograph to decode.
        max_image_bytes: Largest Pixel Data element of one radiograph.
    """

    max_json_depth: int = 100
    max_resource_bytes: int = 16 * 1024 * 1024
    max_response_bytes: int = 256 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_image_bytes: int = 200 * 1024 * 1024


DEFAULT_LIMITS = InputLimits()


def is_fhir_id(value: object) -> bool:
    """True when ``value`` is a string of the FHIR R4 ``id`` datatype.

    ``.`` and ``..`` match the pattern but are path segments to every URL resolver, so
    they are refused too.
    """
    return (
        isinstance(value, str) and FHIR_ID.fullmatch(value) is not None and value not in (".", "..")
    )


def require_fhir_id(value: str, what: str = "id") -> str:
    """Return ``value`` when it is a FHIR id.

    Raises:
        InputLimitExceeded: It is not (the message tells its length, never its content).
    """
    if not is_fhir_id(value):
        raise InputLimitExceeded(
            f"{what} is not a FHIR id (1-64 of A-Z a-z 0-9 - .; got {len(value)} characters)"
        )
    return value


def loads(data: bytes | str, limits: InputLimits = DEFAULT_LIMITS, *, what: str = "JSON") -> Any:
    """Parse JSON within the size and nesting limits.

    Raises:
        InputLimitExceeded: Too large or nested too deep (``RecursionError`` never escapes).
        ValueError: Not JSON at all (``json.JSONDecodeError``).
    """
    if len(data) > limits.max_response_bytes:
        raise InputLimitExceeded(f"{what}: {len(data)} bytes > limit {limits.max_response_bytes}")
    try:
        value = json.loads(data)
    except RecursionError as exc:
        raise InputLimitExceeded(f"{what}: nested deeper than the parser allows") from exc
    if _opening_brackets(data) > limits.max_json_depth:
        check_depth(value, limits.max_json_depth, what=what)
    return value


def _opening_brackets(data: bytes | str) -> int:
    if isinstance(data, str):
        return data.count("{") + data.count("[")
    return data.count(b"{") + data.count(b"[")


def check_depth(value: Any, max_depth: int, *, what: str = "JSON") -> None:
    """Raise :class:`InputLimitExceeded` when ``value`` nests deeper than ``max_depth``.

    Iterative (no recursion), so any depth the parser produced can be checked.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise InputLimitExceeded(f"{what}: nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
