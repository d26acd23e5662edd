"""FHIR R4 access: the REST client, its auth schemes, resource validation and the
``FhirSource`` interface with its HTTP and NDJSON implementations.

Import what you need from here (``from dipro_fhir.fhir import FhirClient``); only
:mod:`dipro_fhir.fhir.resources` imports ``fhir.resources``.
"""

from __future__ import annotations

from dipro_fhir.fhir.auth import (
    BasicAuth,
    BearerTokenAuth,
    FhirAuth,
    NoAuth,
    SmartBackendAuth,
    SmartConfiguration,
    discover_smart_configuration,
)
from dipro_fhir.fhir.bundles import bundle_is_idempotent, next_link
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.fhir.retry import RetryPolicy
from dipro_fhir.fhir.source import FhirSource, HttpFhirSource
from dipro_fhir.fhir.status import error_for_status

__all__ = [
    "BasicAuth",
    "BearerTokenAuth",
    "FhirAuth",
    "FhirClient",
    "FhirSource",
    "HttpFhirSource",
    "NdjsonFhirSource",
    "NoAuth",
    "RetryPolicy",
    "SmartBackendAuth",
    "SmartConfiguration",
    "bundle_is_idempotent",
    "discover_smart_configuration",
    "error_for_status",
    "next_link",
]
