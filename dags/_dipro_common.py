"""What the DiPro DAGs need from Airflow: parse-time options and Settings from Connections.

``dipro_fhir`` never imports Airflow, so the translation from Airflow's world (environment
variables read when a DAG file is parsed, Connections read inside a task) into
:class:`~dipro_fhir.core.settings.Settings` lives here, next to the DAG files. This module imports
only the standard library, Airflow (and its structlog, in ``_dipro_log_secrets``) and
``dipro_fhir.core.settings`` (pydantic): parsing a DAG file must stay cheap, so nothing here pulls
in torch, pydicom or the pipeline.

Connections (all optional; when one is missing the ``DIPRO_*`` environment stands):

``dipro_fhir`` (type ``http``)
    The FHIR R4 server. Base URL from ``extra.base_url`` when set (preferred: a full URL such
    as ``https://fhir.example.org/r4``), else from ``schema`` (``http``/``https``), ``host``,
    ``port`` and ``extra.path``. In the URI form ``http://host:8080/fhir`` Airflow stores the
    path in ``schema``; that is understood too. Auth: ``extra.auth`` (``none``, ``basic``,
    ``bearer``, ``smart``); without it, a ``login`` means Basic auth (``login``/``password``)
    and an ``extra.token`` means a bearer token. ``bearer`` takes ``extra.token`` or the
    password. ``smart`` (SMART Backend Services) takes ``extra.smart_client_id`` (or the
    login), ``extra.smart_token_url``, ``extra.smart_private_key_path``, ``extra.smart_key_id``
    and optionally ``extra.smart_scope``; with a key folder of ``dipro-fhir smart keys``,
    point ``extra.smart_private_key_path`` at its ``signing.pem`` and leave
    ``extra.smart_key_id`` unset (the kid is read beside it, so rotation needs no edit).
    Optional ``extra.timeout_s``, ``extra.verify_tls``.
``dipro_dicomweb`` (type ``http``)
    The DICOMweb server, same URL and auth rules (``none``, ``basic``, ``bearer``).
``dipro_results_db`` (type ``postgres`` or ``sqlite``)
    The results database. ``postgres``: ``postgresql+psycopg2://login:password@host:port/schema``
    with libpq options (``sslmode`` ...) from ``extra``; ``sqlite``: ``host`` is the file path.
    Any type: ``extra.sqlalchemy_url`` is used as is.

A connection's endpoint replaces the file-based source of the same section (``ndjson_dir`` /
``folder``). Secrets stay ``SecretStr``; only connection ids are ever logged.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from _dipro_log_secrets import keep_mask_secrets_out_of_logs
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowNotFoundException
from pydantic import SecretStr

from dipro_fhir.core.settings import DicomWebSettings, FhirSettings, Settings, StoreSettings

logger = logging.getLogger(__name__)

FHIR_CONN_ID = "dipro_fhir"
DICOMWEB_CONN_ID = "dipro_dicomweb"
RESULTS_DB_CONN_ID = "dipro_results_db"

_LIBPQ_OPTIONS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout")
_DEFAULT_SCHEDULE = "0 2 * * *"
_DEFAULT_MONITOR_SCHEDULE = "0 6 * * *"


@dataclass(frozen=True, slots=True)
class DagOptions:
    """Scheduling options read from the environment when a DAG file is parsed.

    Attributes:
        schedule: Cron expression (``DIPRO_SCHEDULE``, default ``0 2 * * *``); ``none`` for
            manual and backfill runs only.
        timezone: Time zone of the cron expression (``DIPRO_SCHEDULE_TIMEZONE``, default UTC).
        gpu_queue: Executor queue of the scoring task (``DIPRO_GPU_QUEUE``, default ``gpu``;
            the Celery worker on that queue holds the GPU; LocalExecutor ignores queues).
        gpu_pool: Pool of the scoring task (``DIPRO_GPU_POOL``, default unset = Airflow's
            ``default_pool``). A named pool must exist, or its tasks wait for ever.
        retries: Retries of the per-chunk tasks (``DIPRO_TASK_RETRIES``, default 2).
        retry_delay: First retry delay (``DIPRO_RETRY_DELAY_S``, default 30 s); it doubles on
            every retry, up to ``max_retry_delay`` (10 min).
        monitor_schedule: Cron expression of the ``dipro_monitor`` DAG
            (``DIPRO_MONITOR_SCHEDULE``, default ``0 6 * * *``: after the night's scoring);
            ``none`` for manual runs only.
    """

    schedule: str | None = _DEFAULT_SCHEDULE
    timezone: str = "UTC"
    gpu_queue: str = "gpu"
    gpu_pool: str | None = None
    retries: int = 2
    retry_delay: timedelta = timedelta(seconds=30)
    max_retry_delay: timedelta = timedelta(minutes=10)
    monitor_schedule: str | None = _DEFAULT_MONITOR_SCHEDULE

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> DagOptions:
        """Read the options; unset or empty variables keep the defaults."""

        def read(name: str, default: str) -> str:
            return environ.get(name, "").strip() or default

        schedule = read("DIPRO_SCHEDULE", _DEFAULT_SCHEDULE)
        monitor = read("DIPRO_MONITOR_SCHEDULE", _DEFAULT_MONITOR_SCHEDULE)
        return cls(
            schedule=None if schedule.lower() == "none" else schedule,
            timezone=read("DIPRO_SCHEDULE_TIMEZONE", "UTC"),
            gpu_queue=read("DIPRO_GPU_QUEUE", "gpu"),
            gpu_pool=read("DIPRO_GPU_POOL", "") or None,
            retries=int(read("DIPRO_TASK_RETRIES", "2")),
            retry_delay=timedelta(seconds=float(read("DIPRO_RETRY_DELAY_S", "30"))),
            monitor_schedule=None if monitor.lower() == "none" else monitor,
        )


def build_settings() -> Settings:
    """Settings for a task: the ``DIPRO_*`` environment, overridden by the Connections.

    Every task calls this first, so it also applies the project's log rules inside the task
    (:func:`dipro_fhir.core.log.configure_task`: third-party loggers at WARNING, UIDs and paths
    redacted) and, before any connection is read, keeps the secrets it registers out of
    Airflow's DEBUG output (:mod:`_dipro_log_secrets`).
    """
    from dipro_fhir.core import log

    log.configure_task()
    keep_mask_secrets_out_of_logs()
    settings = Settings()
    update: dict[str, Any] = {}
    fhir = _find_connection(FHIR_CONN_ID)
    if fhir is not None:
        update["fhir"] = fhir_settings_from(fhir, settings.fhir)
    dicomweb = _find_connection(DICOMWEB_CONN_ID)
    if dicomweb is not None:
        update["dicomweb"] = dicomweb_settings_from(dicomweb, settings.dicomweb)
    results_db = _find_connection(RESULTS_DB_CONN_ID)
    if results_db is not None:
        update["store"] = StoreSettings(url=SecretStr(results_db_url(results_db)))
    logger.info("settings built; connections used: %s", sorted(update) or "none")
    return settings.model_copy(update=update)


def fhir_settings_from(conn: Connection, base: FhirSettings) -> FhirSettings:
    """The FHIR settings of ``base`` with the endpoint and credentials of ``conn``."""
    extra = conn.extra_dejson
    fields: dict[str, Any] = {"base_url": http_base_url(conn), "ndjson_dir": None}
    fields.update(_http_auth_fields(conn, extra, allow_smart=True))
    smart_keys = ("smart_token_url", "smart_private_key_path", "smart_key_id", "smart_scope")
    fields.update({key: extra[key] for key in smart_keys if extra.get(key)})
    if fields.get("auth") == "smart":
        fields["smart_client_id"] = extra.get("smart_client_id") or conn.login
    fields.update(_client_options(extra))
    return FhirSettings.model_validate({**base.model_dump(), **fields})


def dicomweb_settings_from(conn: Connection, base: DicomWebSettings) -> DicomWebSettings:
    """The DICOMweb settings of ``base`` with the endpoint and credentials of ``conn``."""
    extra = conn.extra_dejson
    fields: dict[str, Any] = {"base_url": http_base_url(conn), "folder": None}
    fields.update(_http_auth_fields(conn, extra, allow_smart=False))
    fields.update(_client_options(extra))
    return DicomWebSettings.model_validate({**base.model_dump(), **fields})


def http_base_url(conn: Connection) -> str:
    """The service base URL of an HTTP connection (see the module docstring for the rules)."""
    explicit = conn.extra_dejson.get("base_url")
    if explicit:
        return str(explicit).rstrip("/")
    if not conn.host:
        raise ValueError(f"connection {conn.conn_id!r} has neither host nor extra.base_url")
    host, port = conn.host.rstrip("/"), conn.port
    if "://" in host:  # a full URL typed into the host field
        return host if port is None else _with_port(host, port)
    if conn.schema in ("http", "https"):
        scheme, path = conn.schema, str(conn.extra_dejson.get("path", ""))
    else:  # URI form: Airflow keeps the URL path in ``schema``
        scheme = "https" if conn.conn_type == "https" else "http"
        path = conn.schema or str(conn.extra_dejson.get("path", ""))
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}/{path.strip('/')}".rstrip("/")


def results_db_url(conn: Connection) -> str:
    """A SQLAlchemy URL for the results-database connection.

    Raises:
        ValueError: The connection type is neither ``postgres`` nor ``sqlite`` and there is
            no ``extra.sqlalchemy_url``.
    """
    extra = conn.extra_dejson
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "sqlite":
        return f"sqlite:///{conn.host}"
    if conn_type not in ("postgres", "postgresql"):
        raise ValueError(f"connection {conn.conn_id!r}: unsupported type {conn.conn_type!r}")
    credentials = ""
    if conn.login:
        credentials = quote(conn.login, safe="")
        if conn.password:
            credentials += ":" + quote(conn.password, safe="")
        credentials += "@"
    netloc = (conn.host or "") + ("" if conn.port is None else f":{conn.port}")
    query = "&".join(f"{k}={quote(str(extra[k]), safe='')}" for k in _LIBPQ_OPTIONS if k in extra)
    url = f"postgresql+psycopg2://{credentials}{netloc}/{conn.schema or ''}"
    return url + (f"?{query}" if query else "")


def _find_connection(conn_id: str) -> Connection | None:
    try:
        conn: Connection = Connection.get(conn_id)
    except AirflowNotFoundException:
        return None
    return conn


def _http_auth_fields(
    conn: Connection, extra: Mapping[str, Any], *, allow_smart: bool
) -> dict[str, Any]:
    auth = str(extra.get("auth") or "").lower()
    if not auth:
        auth = "basic" if conn.login else "bearer" if extra.get("token") else ""
    if not auth:
        return {}  # the connection carries no credentials: keep the environment's auth
    allowed = ("none", "basic", "bearer", "smart") if allow_smart else ("none", "basic", "bearer")
    if auth not in allowed:
        raise ValueError(f"connection {conn.conn_id!r}: extra.auth must be one of {allowed}")
    fields: dict[str, Any] = {"auth": auth}
    if auth == "basic":
        fields["username"] = conn.login
        fields["password"] = SecretStr(conn.password or "")
    elif auth == "bearer":
        fields["token"] = SecretStr(str(extra.get("token") or conn.password or ""))
    return fields


def _client_options(extra: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if "timeout_s" in extra:
        options["timeout_s"] = float(extra["timeout_s"])
    if "verify_tls" in extra:
        options["verify_tls"] = str(extra["verify_tls"]).lower() not in ("false", "0", "no")
    return options


def _with_port(url: str, port: int) -> str:
    scheme, rest = url.split("://", 1)
    netloc, _, path = rest.partition("/")
    if ":" in netloc:
        return url
    return f"{scheme}://{netloc}:{port}" + (f"/{path}" if path else "")
