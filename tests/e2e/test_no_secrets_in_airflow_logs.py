"""No connection secret in any log of a night run through Airflow at DEBUG (issue 23, item 16).

A night of ``dipro_nightly`` runs under ``airflow dags test`` in a subprocess with every logger
at DEBUG, against the real servers: HAPI FHIR (the FHIR connection carries Basic-auth
credentials), Orthanc (the DICOMweb connection carries a bearer token) and PostgreSQL (the
results-database connection carries a password). Nothing but the connections tells the tasks
where the servers are, so a night that succeeds used all three. The secrets are distinctive
strings; none of them, nor the Basic-auth header made of one, may appear in Airflow's output
or in any file under its log folder.

Both servers accept the credentials without checking them (HAPI has no security interceptor,
the test Orthanc is open and PostgreSQL trusts loopback): the secrets still travel in every
request, which is what a log could leak.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from tests.checkpoints import write_tiny_checkpoint
from tests.e2e.conftest import VENV_BIN, AirflowEnv
from tests.servers.orthanc import OrthancServer

AS_OF = datetime(2026, 7, 14, 2, tzinfo=UTC)
FHIR_LOGIN = "dipro-night"
FHIR_PASSWORD = "fhirPw-Q7x2Lm9Vd"
DICOMWEB_TOKEN = "dcmTok-Z4k8Rt1Wp"
DB_PASSWORD = "pgPw-H3v6Ns5Ky"


def secret_forms() -> dict[str, str]:
    """Every form in which a secret of the night could reach a log, by a readable name."""
    basic = base64.b64encode(f"{FHIR_LOGIN}:{FHIR_PASSWORD}".encode()).decode()
    return {
        "fhir password": FHIR_PASSWORD,
        "fhir basic header": basic,
        "dicomweb token": DICOMWEB_TOKEN,
        "database password": DB_PASSWORD,
    }


def log_texts(home: Path, output: str) -> list[tuple[str, str]]:
    """Airflow's output and every file under its log folder, as ``(name, text)``."""
    texts = [("output", output)]
    logs = home / "logs"
    for path in sorted(logs.rglob("*")) if logs.exists() else []:
        if path.is_file():
            texts.append((str(path.relative_to(home)), path.read_text(errors="replace")))
    return texts


def count_secrets(texts: list[tuple[str, str]]) -> dict[str, int]:
    """How often each secret form occurs in all the texts together."""
    return {
        name: sum(text.count(value) for _, text in texts) for name, value in secret_forms().items()
    }


def leaking_lines(texts: list[tuple[str, str]]) -> list[str]:
    """The lines that hold a secret, the secret replaced by its name, for the failure message."""
    found: list[str] = []
    for where, text in texts:
        for line in text.splitlines():
            shown = line
            for name, value in secret_forms().items():
                shown = shown.replace(value, f"<{name}>")
            if shown != line:
                found.append(f"{where}: {shown[:300]}")
    return found


@pytest.fixture(scope="module")
def loaded_servers(fhir_server: Any, orthanc: OrthancServer) -> Iterator[tuple[str, str]]:
    """A small synthetic cohort on HAPI and Orthanc; their base URLs."""
    from dipro_fhir.fhir.client import FhirClient
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import load_into_servers

    fhir_server.reset()
    orthanc.reset()
    patients = generate_cohort(
        3,
        seed=23,
        start=AS_OF - timedelta(days=3),
        admission_span_days=2,
        reference_time=AS_OF,
        id_prefix="secret",
    )
    with FhirClient(fhir_server.base_url) as client:
        load_into_servers(patients, client, orthanc.dicomweb_url, image_size=(128, 128))
    yield fhir_server.base_url, orthanc.dicomweb_url
    fhir_server.reset()
    orthanc.reset()


def _connections(fhir_url: str, dicomweb_url: str, pg_url: str) -> dict[str, str]:
    database = pg_url.rsplit("/", 1)[1]
    conns: dict[str, dict[str, Any]] = {
        "DIPRO_FHIR": {
            "conn_type": "http",
            "login": FHIR_LOGIN,
            "password": FHIR_PASSWORD,
            "extra": {"base_url": fhir_url},
        },
        "DIPRO_DICOMWEB": {
            "conn_type": "http",
            "extra": {"base_url": dicomweb_url, "token": DICOMWEB_TOKEN},
        },
        "DIPRO_RESULTS_DB": {
            "conn_type": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "schema": database,
            "login": "postgres",
            "password": DB_PASSWORD,
        },
    }
    return {f"AIRFLOW_CONN_{conn_id}": json.dumps(conn) for conn_id, conn in conns.items()}


def _score_rows(pg_url: str) -> int:
    from dipro_fhir.store.models import ScoreRow

    engine = create_engine(pg_url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(ScoreRow)).scalar_one()
    engine.dispose()
    return int(count)


def run_night_at_debug(
    airflow_env: AirflowEnv, servers: tuple[str, str], pg_url: str, work: Path
) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str]]]:
    """``airflow dags test dipro_nightly`` at DEBUG with the secret-carrying connections."""
    write_tiny_checkpoint(work / "checkpoint", name="secrets", version="1")
    environ = {
        **airflow_env.environ,
        **_connections(*servers, pg_url),
        "DIPRO_MODEL__CHECKPOINT": str(work / "checkpoint"),
        "DIPRO_RUN__STAGING_DIR": str(work / "staging"),
        "DIPRO_RUN__AVAILABILITY": "issued",  # loaded today: read availability from `issued`
        "DIPRO_WRITEBACK__TARGET": "fhir",
        "DIPRO_TASK_RETRIES": "0",
        "DIPRO_SCHEDULE": "none",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG",
    }
    for name in (
        "DIPRO_FHIR__BASE_URL",
        "DIPRO_FHIR__NDJSON_DIR",
        "DIPRO_DICOMWEB__BASE_URL",
        "DIPRO_DICOMWEB__FOLDER",
        "DIPRO_STORE__URL",
    ):
        environ.pop(name, None)  # only the connections say where the servers are
    done = subprocess.run(
        [str(VENV_BIN / "airflow"), "dags", "test", "dipro_nightly", AS_OF.isoformat()],
        env=environ,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    return done, log_texts(airflow_env.home, done.stdout + done.stderr)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_night_at_debug_through_airflow_logs_no_connection_secret(
    airflow_env: AirflowEnv,
    loaded_servers: tuple[str, str],
    migrated_pg_url: str,
    tmp_path: Path,
) -> None:
    done, texts = run_night_at_debug(airflow_env, loaded_servers, migrated_pg_url, tmp_path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "[debug" in output.lower()  # the run really logged at DEBUG
    # ... and through the in-process supervisor, which logs each request a task sends
    assert "Sending request" in output
    assert "connections used: ['dicomweb', 'fhir', 'store']" in output
    assert _score_rows(migrated_pg_url) > 0  # the database connection really was used

    counts = count_secrets(texts)
    print(f"dags test at DEBUG: {len(texts)} logs searched; secret occurrences: {counts}")
    assert sum(counts.values()) == 0, f"secrets in Airflow's logs: {counts}:\n" + "\n".join(
        leaking_lines(texts)[:6]
    )
