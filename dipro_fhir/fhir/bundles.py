"""Reading Bundles the client sends and receives: the ``next`` page link of a searchset and
whether a transaction or batch may be repeated safely (FHIR R4 ``Bundle``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """Return the Bundle's ``link`` with relation ``next`` (FHIR R4 ``Bundle.link``)."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            return url if isinstance(url, str) and url else None
    return None


def bundle_is_idempotent(bundle: Mapping[str, Any]) -> bool:
    """True when repeating the Bundle cannot duplicate anything: every entry's
    ``request`` is a PUT, GET or DELETE of ``Type/id`` (no conditional URLs, no POST)."""
    for entry in bundle.get("entry") or []:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict):
            return False
        method, url = request.get("method"), request.get("url")
        if method not in ("PUT", "GET", "DELETE") or not isinstance(url, str):
            return False
        if method != "GET" and ("?" in url or url.count("/") != 1):
            return False
    return True
