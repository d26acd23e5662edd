"""Where a set of patients came from, in words a model card can carry: the kind of source
and its location (a server's address without credentials, or the name of a local folder, not
its machine-specific path), never patient ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dipro_fhir.core.settings import Settings


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _name(folder: Path | None) -> str:
    """The last two parts of a folder's path (``cohort/dicom``)."""
    return "" if folder is None else "/".join(folder.parts[-2:])


def describe_source(settings: Settings, site: str = "") -> dict[str, Any]:
    """The FHIR and image sources of ``settings``, and the site's own label."""
    fhir = settings.fhir
    images = settings.dicomweb
    return {
        "site": site,
        "fhir": f"FHIR server {_without_credentials(fhir.base_url)}"
        if fhir.base_url
        else f"FHIR NDJSON folder {_name(fhir.ndjson_dir)}",
        "images": f"DICOMweb {_without_credentials(images.base_url)}"
        if images.base_url
        else f"DICOM folder {_name(images.folder)}",
        "locator": settings.imaging.locator,
    }
