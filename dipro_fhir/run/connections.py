"""Settings become connected sources, sinks and stores here, and nowhere else.

Each kind of endpoint has two real implementations (a server, or local files for the embedded
mode); which one a run gets depends only on :class:`~dipro_fhir.core.settings.Settings`. Secrets
are revealed at the last moment, into the client that needs them.
"""

from __future__ import annotations

from collections.abc import Sequence

import requests
from sqlalchemy import Engine, create_engine

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.core.limits import InputLimits
from dipro_fhir.core.risk import RiskThresholds
from dipro_fhir.core.settings import DicomWebSettings, FhirSettings, Settings
from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.fhir.auth import BasicAuth, BearerTokenAuth, FhirAuth, SmartBackendAuth
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.cohort import CohortRule
from dipro_fhir.fhir.concept_maps import load_code_maps
from dipro_fhir.fhir.exchange import Observer
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.fhir.retry import RetryPolicy
from dipro_fhir.fhir.source import FhirSource, HttpFhirSource
from dipro_fhir.imaging.sources import DicomWebImageSource, FolderImageSource, ImageSource
from dipro_fhir.mapping.code_maps import CodeMaps
from dipro_fhir.store.feature_cache import FeatureCache
from dipro_fhir.store.results import ResultStore
from dipro_fhir.store.retry import StoreRetry
from dipro_fhir.writeback.sinks import FhirResultSink, NdjsonResultSink, ResultSink


def fhir_auth(fhir: FhirSettings) -> FhirAuth | None:
    """The auth scheme the FHIR settings ask for.

    Raises:
        ConfigError: A scheme is chosen but its credentials are missing.
    """
    if fhir.auth == "none":
        return None
    if fhir.auth == "basic":
        if not fhir.username or fhir.password is None:
            raise ConfigError("fhir.auth=basic needs fhir.username and fhir.password")
        return BasicAuth(fhir.username, fhir.password.get_secret_value())
    if fhir.auth == "bearer":
        if fhir.token is None:
            raise ConfigError("fhir.auth=bearer needs fhir.token")
        return BearerTokenAuth(fhir.token.get_secret_value())
    from dipro_fhir.fhir.smart_keys import algorithm_for, key_id_for

    missing = [
        name
        for name in ("smart_client_id", "smart_token_url", "smart_private_key_path")
        if getattr(fhir, name) is None
    ]
    if missing:
        raise ConfigError(f"fhir.auth=smart needs {', '.join('fhir.' + m for m in missing)}")
    assert fhir.smart_private_key_path is not None  # checked above, for mypy
    key = fhir.smart_private_key_path.read_bytes()
    # ``dipro-fhir smart keys``: the kid of ``signing.pem`` is in ``signing.kid`` beside it.
    key_id = fhir.smart_key_id or key_id_for(fhir.smart_private_key_path)
    if key_id is None:
        raise ConfigError("fhir.auth=smart needs fhir.smart_key_id (or a key from `smart keys`)")
    return SmartBackendAuth(
        token_url=str(fhir.smart_token_url),
        client_id=str(fhir.smart_client_id),
        private_key=key,
        key_id=key_id,
        scope=fhir.smart_scope,
        algorithm=algorithm_for(key),
        verify_tls=fhir.verify_tls,
    )


def input_limits(settings: Settings) -> InputLimits:
    """The run's input limits (``settings.limits``)."""
    return InputLimits(**settings.limits.model_dump())


def fhir_client(
    fhir: FhirSettings, limits: InputLimits | None = None, observers: Sequence[Observer] = ()
) -> FhirClient:
    """A pooled FHIR client for ``fhir.base_url`` (``observers``: the audit trail's hooks).

    Raises:
        ConfigError: No base URL is configured.
    """
    if not fhir.base_url:
        raise ConfigError("no FHIR server: set DIPRO_FHIR__BASE_URL")
    return FhirClient(
        fhir.base_url,
        auth=fhir_auth(fhir),
        timeout_s=fhir.timeout_s,
        retry=RetryPolicy(max_attempts=fhir.max_retries + 1),
        verify_tls=fhir.verify_tls,
        page_size=fhir.page_size,
        next_link_base=fhir.next_link_base,
        limits=limits or InputLimits(),
        observers=observers,
    )


def fhir_source(
    settings: Settings, *, images: bool = True, observers: Sequence[Observer] = ()
) -> FhirSource:
    """The FHIR source: a server when ``fhir.base_url`` is set, else the NDJSON folder.

    ``images=False`` is for commands that read FHIR only (``dipro-fhir codes``): they need
    no image source configured.
    """
    if images or not (settings.fhir.base_url or settings.fhir.ndjson_dir):
        settings.require_sources()
    limits = input_limits(settings)
    if settings.fhir.base_url:
        if settings.fhir.batched_search != "off":
            from dipro_fhir.fhir.batched import BatchedHttpFhirSource

            client = fhir_client(settings.fhir, limits, observers)
            return BatchedHttpFhirSource(
                client,
                batch_size=settings.fhir.batch_size,
                check_server=settings.fhir.batched_search == "auto",
            )
        return HttpFhirSource(fhir_client(settings.fhir, limits, observers))
    assert settings.fhir.ndjson_dir is not None  # require_sources checked it
    return NdjsonFhirSource(settings.fhir.ndjson_dir, limits)


def dicomweb_client(dicomweb: DicomWebSettings) -> DicomWebClient:
    """A DICOMweb client for ``dicomweb.base_url`` with the configured auth, TLS and retries.

    Raises:
        ConfigError: No base URL is configured.
    """
    if not dicomweb.base_url:
        raise ConfigError("no DICOMweb server: set DIPRO_DICOMWEB__BASE_URL")
    session = requests.Session()
    session.verify = dicomweb.verify_tls
    return DicomWebClient(
        dicomweb.base_url,
        session=session,
        timeout_s=dicomweb.timeout_s,
        retry=RetryPolicy(max_attempts=dicomweb.max_retries + 1),
        username=dicomweb.username if dicomweb.auth == "basic" else None,
        password=dicomweb.password.get_secret_value() if dicomweb.password else None,
        token=(
            dicomweb.token.get_secret_value()
            if dicomweb.auth == "bearer" and dicomweb.token
            else None
        ),
    )


def image_source(dicomweb: DicomWebSettings) -> ImageSource:
    """The image source: a DICOMweb server when ``dicomweb.base_url`` is set, else a folder.

    Raises:
        ConfigError: Neither is configured.
    """
    if dicomweb.base_url:
        return DicomWebImageSource(dicomweb_client(dicomweb))
    if dicomweb.folder is not None:
        return FolderImageSource(dicomweb.folder)
    raise ConfigError("no image source: set DIPRO_DICOMWEB__BASE_URL or DIPRO_DICOMWEB__FOLDER")


def result_sink(settings: Settings, observers: Sequence[Observer] = ()) -> ResultSink | None:
    """Where RiskAssessments go: the FHIR server, an NDJSON folder, or nowhere (``none``, and
    in shadow mode whatever the target: scores go to the results database only)."""
    target = settings.writeback.target
    if target == "none" or settings.writeback.shadow:
        return None
    if target == "ndjson":
        return NdjsonResultSink(settings.writeback.ndjson_dir)
    return FhirResultSink(fhir_client(settings.fhir, input_limits(settings), observers))


def engine(settings: Settings) -> Engine:
    """A SQLAlchemy engine for the results database (``pool_pre_ping`` for long DAGs).

    ``hide_parameters``: a database error's message (and so its traceback in a log) never
    shows the statement's parameters, which hold patient ids and scores.
    """
    url = settings.store.url.get_secret_value()
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


def feature_cache(settings: Settings) -> FeatureCache | None:
    """The shared CXR feature cache on the results database, or ``None`` when disabled.

    Raises:
        ConfigError: The results database has no ``feature_cache`` table (not migrated).
    """
    cache = settings.cache
    if not cache.enabled:
        return None
    root = cache.url if cache.backend == "fsspec" else None
    return FeatureCache(engine(settings), max_bytes=cache.max_bytes, object_store=root)


def code_maps(settings: Settings) -> CodeMaps:
    """The run's code maps: the shipped ones, the site's folder, the server's by URL.

    Raises:
        ConfigError: A configured map cannot be found or read.
    """
    mapping = settings.mapping
    if not mapping.concept_map_urls:
        return load_code_maps(mapping.builtin_maps, mapping.concept_map_dir)
    with fhir_client(settings.fhir) as client:
        return load_code_maps(
            mapping.builtin_maps, mapping.concept_map_dir, mapping.concept_map_urls, client
        )


def cohort_rule(settings: Settings, maps: CodeMaps) -> CohortRule:
    """The encounter rule of ``settings.cohort`` (``class`` for the group and list rules,
    which choose patients, not encounters), with the site's class map."""
    cohort = settings.cohort
    return CohortRule(
        kind="location" if cohort.rule == "location" else "class",
        classes=frozenset(cohort.classes),
        class_map=maps.classes,
        location_types=cohort.icu_location_types,
        location_names=cohort.icu_location_names,
    )


def result_store(settings: Settings) -> ResultStore:
    """The results store with the configured risk thresholds."""
    thresholds = RiskThresholds(
        moderate_at=settings.writeback.moderate_risk_at, high_at=settings.writeback.high_risk_at
    )
    return ResultStore(engine(settings), thresholds, StoreRetry(window_s=settings.store.retry_s))
