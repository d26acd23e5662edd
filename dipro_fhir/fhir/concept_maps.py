"""Load a site's code maps: ConceptMap JSON files from a folder, or from the FHIR server.

The parsing and merging are pure (:mod:`dipro_fhir.mapping.code_maps`); this module only
fetches the JSON. A folder holds ``*.json`` files, each a ConceptMap or a Bundle whose
entries include ConceptMaps (other resources are skipped), read in file-name order. On a
server a map is found by its canonical URL (``ConceptMap?url=<canonical>``, FHIR R4
§3.1.1.5.x "canonical"; a ``url|version`` asks for one version); when several versions
match, the one with the highest ``version`` string is used. A map that cannot be found or
read stops the run (:class:`~dipro_fhir.core.errors.ConfigError`): scoring with half a site's
codes would silently drop the rest.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.mapping.code_maps import CodeMaps, build_code_maps, builtin_concept_map

log = logging.getLogger(__name__)


class ConceptMapSearch(Protocol):
    """What loading needs of a FHIR client (:class:`~dipro_fhir.fhir.client.FhirClient`)."""

    def search(
        self, resource_type: str, params: dict[str, str | list[str]]
    ) -> Iterator[dict[str, Any]]:
        """Yield the resources a search matches."""
        ...


def _concept_maps_in(resource: Any, origin: str) -> list[dict[str, Any]]:
    if isinstance(resource, dict) and resource.get("resourceType") == "ConceptMap":
        return [resource]
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        entries = resource.get("entry") or []
        return [
            e["resource"]
            for e in entries
            if isinstance(e, dict)
            and isinstance(e.get("resource"), dict)
            and e["resource"].get("resourceType") == "ConceptMap"
        ]
    log.warning("concept map folder: %s holds no ConceptMap; skipped", origin)
    return []


def folder_concept_maps(folder: Path) -> list[dict[str, Any]]:
    """The ConceptMaps of every ``*.json`` file in ``folder``, by file name.

    Raises:
        ConfigError: The folder is missing or a file is not JSON.
    """
    if not folder.is_dir():
        raise ConfigError(f"concept map folder not found: {folder}")
    found: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")):
        try:
            resource = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"concept map file {path.name} is not readable JSON") from exc
        found.extend(_concept_maps_in(resource, path.name))
    log.info("concept map folder: %d maps", len(found))
    return found


def server_concept_maps(client: ConceptMapSearch, urls: Sequence[str]) -> list[dict[str, Any]]:
    """The ConceptMaps of canonical ``urls`` (``url`` or ``url|version``), in order.

    Raises:
        ConfigError: A URL matches no ConceptMap on the server.
    """
    found: list[dict[str, Any]] = []
    for canonical in urls:
        url, _, version = canonical.partition("|")
        params: dict[str, str | list[str]] = {"url": url}
        if version:
            params["version"] = version
        matches = [
            r
            for r in client.search("ConceptMap", params)
            if r.get("url") == url and (not version or r.get("version") == version)
        ]
        if not matches:
            raise ConfigError(f"no ConceptMap with url {canonical} on the FHIR server")
        found.append(max(matches, key=lambda r: str(r.get("version") or "")))
    return found


def load_code_maps(
    builtin: Sequence[str],
    folder: Path | None = None,
    urls: Sequence[str] = (),
    client: ConceptMapSearch | None = None,
) -> CodeMaps:
    """The shipped maps ``builtin``, then the folder's, then the server's, merged in order.

    Raises:
        ConfigError: A map cannot be found, read or understood
            (:class:`~dipro_fhir.mapping.concept_map.ConceptMapError` is one).
    """
    maps = [builtin_concept_map(name) for name in builtin]
    if folder is not None:
        maps.extend(folder_concept_maps(folder))
    if urls:
        if client is None:
            raise ConfigError("concept maps by URL need a FHIR server (fhir.base_url)")
        maps.extend(server_concept_maps(client, urls))
    return build_code_maps(maps)
