"""Airflow connections become Settings: endpoints, credentials and the results-database URL.

Connections are given the way deployments give them (``AIRFLOW_CONN_<ID>`` environment
variables, JSON or URI form) and read through Airflow's own secrets backends.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from _dipro_common import build_settings


def _set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str, value: dict[str, Any] | str) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", text)


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for conn_id in ("DIPRO_FHIR", "DIPRO_DICOMWEB", "DIPRO_RESULTS_DB"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id}", raising=False)
    monkeypatch.setenv("DIPRO_FHIR__NDJSON_DIR", "/srv/cohort/fhir")
    monkeypatch.setenv("DIPRO_DICOMWEB__FOLDER", "/srv/cohort/dicom")
    monkeypatch.setenv("DIPRO_STORE__URL", "sqlite:///env.sqlite")


def test_without_connections_the_environment_stands() -> None:
    settings = build_settings()
    assert settings.fhir.ndjson_dir == Path("/srv/cohort/fhir")
    assert settings.dicomweb.folder == Path("/srv/cohort/dicom")
    assert settings.store.url.get_secret_value() == "sqlite:///env.sqlite"


def test_fhir_connection_extra_base_url_replaces_the_ndjson_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set_conn(
        monkeypatch,
        "dipro_fhir",
        {
            "conn_type": "http",
            "host": "hapi",
            "port": 8080,
            "extra": {"base_url": "http://hapi:8080/fhir/"},
        },
    )
    fhir = build_settings().fhir
    assert (fhir.base_url, fhir.ndjson_dir, fhir.auth) == ("http://hapi:8080/fhir", None, "none")


def test_fhir_connection_uri_form_keeps_the_path_and_basic_auth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _set_conn(monkeypatch, "dipro_fhir", "https://svc:p%40ss@fhir.example.org:8443/r4")
    fhir = build_settings().fhir
    assert fhir.base_url == "https://fhir.example.org:8443/r4"
    assert (fhir.auth, fhir.username) == ("basic", "svc")
    assert fhir.password is not None
    assert fhir.password.get_secret_value() == "p@ss"


def test_fhir_connection_http_fields_build_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "http", "host": "fhir.local", "schema": "https", "extra": {"path": "/R4"}}
    _set_conn(monkeypatch, "dipro_fhir", conn)
    assert build_settings().fhir.base_url == "https://fhir.local/R4"


def test_fhir_connection_token_means_bearer_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"base_url": "https://f.example/fhir", "token": "tok-123", "timeout_s": 5}
    _set_conn(monkeypatch, "dipro_fhir", {"conn_type": "http", "extra": extra})
    fhir = build_settings().fhir
    assert fhir.auth == "bearer"
    assert fhir.token is not None
    assert fhir.token.get_secret_value() == "tok-123"
    assert fhir.timeout_s == 5.0


def test_fhir_connection_smart_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {
        "base_url": "https://f.example/fhir",
        "auth": "smart",
        "smart_token_url": "https://auth.example/token",
        "smart_private_key_path": "/run/secrets/key.pem",
        "smart_key_id": "kid-1",
    }
    _set_conn(monkeypatch, "dipro_fhir", {"conn_type": "http", "login": "client-7", "extra": extra})
    fhir = build_settings().fhir
    assert (fhir.auth, fhir.smart_client_id, fhir.smart_key_id) == ("smart", "client-7", "kid-1")
    assert fhir.smart_private_key_path == Path("/run/secrets/key.pem")


def test_dicomweb_connection_with_login_uses_basic_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {
        "conn_type": "http",
        "host": "orthanc",
        "port": 8042,
        "login": "dipro",
        "password": "pw",
        "extra": {"base_url": "http://orthanc:8042/dicom-web"},
    }
    _set_conn(monkeypatch, "dipro_dicomweb", conn)
    dicomweb = build_settings().dicomweb
    assert (dicomweb.base_url, dicomweb.folder) == ("http://orthanc:8042/dicom-web", None)
    assert (dicomweb.auth, dicomweb.username) == ("basic", "dipro")


def test_dicomweb_connection_refuses_smart_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"base_url": "http://o/dicom-web", "auth": "smart"}
    _set_conn(monkeypatch, "dipro_dicomweb", {"conn_type": "http", "extra": extra})
    with pytest.raises(ValueError, match=r"extra\.auth"):
        build_settings()


def test_postgres_connection_becomes_a_psycopg2_url_with_quoted_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = {
        "conn_type": "postgres",
        "host": "db",
        "port": 5432,
        "schema": "dipro",
        "login": "dipro",
        "password": "p@ss:w/rd",
        "extra": {"sslmode": "require"},
    }
    _set_conn(monkeypatch, "dipro_results_db", conn)
    url = build_settings().store.url.get_secret_value()
    assert url == "postgresql+psycopg2://dipro:p%40ss%3Aw%2Frd@db:5432/dipro?sslmode=require"


def test_sqlite_connection_uses_its_host_as_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    _set_conn(monkeypatch, "dipro_results_db", {"conn_type": "sqlite", "host": "/var/r.sqlite"})
    assert build_settings().store.url.get_secret_value() == "sqlite:////var/r.sqlite"


def test_building_settings_logs_no_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _set_conn(monkeypatch, "dipro_fhir", "https://svc:hunter2-secret@fhir.example.org/r4")
    _set_conn(monkeypatch, "dipro_results_db", "postgres://u:pg-secret-9@db/dipro")
    with caplog.at_level(logging.DEBUG):
        settings = build_settings()
    assert "hunter2-secret" not in caplog.text
    assert "pg-secret-9" not in caplog.text
    assert "hunter2-secret" not in repr(settings)
    assert "pg-secret-9" not in repr(settings)
