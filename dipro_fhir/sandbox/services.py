"""The sandbox's servers: PostgreSQL (the machine's cluster, never stopped here) with the
results database, HAPI FHIR and Orthanc."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import requests

from dipro_fhir.sandbox.core import (
    DICOMWEB_PLUGIN,
    HAPI_READY_S,
    ORTHANC_BIN,
    Sandbox,
    SandboxError,
    read_pid,
    require_port,
    spawn,
    wait_for,
)

# --- PostgreSQL ----------------------------------------------------------------------------


def _pg_answers(sandbox: Sandbox) -> bool:
    from dipro_fhir.sandbox.servers.postgres import answers

    return answers(sandbox.results_db_url("postgres"))


def _pg_admin(sandbox: Sandbox, statement: str, **params: Any) -> list[Any]:
    import sqlalchemy as sa

    engine = sa.create_engine(
        sandbox.results_db_url("postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def ensure_postgres(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    """PostgreSQL answers (started with pg_ctlcluster if it is the local cluster and down)."""
    if _pg_answers(sandbox):
        note(f"answers on {sandbox.config.pg_host}:{sandbox.config.pg_port}")
        return
    if sandbox.config.pg_host == "127.0.0.1":
        from dipro_fhir.sandbox.servers.postgres import start_local_cluster

        started = start_local_cluster(sandbox.results_db_url("postgres"))
        if started:
            note(f"started cluster {started}")
            return
    raise SandboxError(
        f"PostgreSQL does not answer on {sandbox.config.pg_host}:{sandbox.config.pg_port} "
        "as user postgres without a password, and could not be started: "
        "run bash scripts/install.sh"
    )


def ensure_results_db(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    """Create the results database and Airflow's metadata database if missing; bring the
    results database to ``alembic upgrade head`` (``airflow db migrate`` does Airflow's)."""
    name = sandbox.config.results_db
    if not name.replace("_", "").isalnum():
        raise SandboxError(f"results database name must be alphanumeric/underscore: {name!r}")
    for database in (name, sandbox.airflow_db):
        exists = _pg_admin(sandbox, "SELECT 1 FROM pg_database WHERE datname = :n", n=database)
        if not exists:
            _pg_admin(sandbox, f'CREATE DATABASE "{database}"')
            note(f"created database {database}")
    from dipro_fhir.store import upgrade_database

    upgrade_database(sandbox.results_db_url())
    note(f"{name} at alembic head")


def drop_results_db(sandbox: Sandbox) -> bool:
    if not _pg_answers(sandbox):
        return False
    for database in (sandbox.config.results_db, sandbox.airflow_db):
        _pg_admin(sandbox, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    return True


# --- HAPI FHIR -----------------------------------------------------------------------------


def fhir_metadata_ok(sandbox: Sandbox) -> bool | None:
    response = requests.get(
        f"{sandbox.fhir_url}/metadata", headers={"Accept": "application/fhir+json"}, timeout=10
    )
    return True if response.status_code == 200 else None


def start_hapi(sandbox: Sandbox, note: Callable[[str], None]) -> bool:
    """Start HAPI (H2 file database under ``hapi/``) unless it runs; True when started now."""
    if read_pid(sandbox, "hapi") is not None:
        note(f"already running on {sandbox.fhir_url}")
        return False
    require_port(sandbox.config.hapi_port, "HAPI FHIR", "--hapi-port")
    from dipro_fhir.sandbox.servers import hapi_server

    jar = hapi_server.ensure_jar()  # builds it with scripts/build_hapi.sh when out of date
    data = sandbox.path("hapi")
    data.mkdir(parents=True, exist_ok=True)
    java = os.environ.get("JAVA", "java")
    if shutil.which(java) is None:
        raise SandboxError(f"{java} not found: install Java 17 (bash scripts/install.sh)")
    argv = [
        java,
        *(sandbox.config.hapi_java_opts.split() or hapi_server.DEFAULT_JAVA_OPTS),
        "-jar",
        str(jar),
        f"--server.port={sandbox.config.hapi_port}",
        f"--dipro.hapi.batch2-maintenance-interval-ms={hapi_server.BATCH2_MAINTENANCE_INTERVAL_MS}",
        # An H2 file database in the sandbox folder: persistent across down/up, no server.
        f"--spring.datasource.url=jdbc:h2:file:{data / 'fhir'};DB_CLOSE_ON_EXIT=FALSE",
    ]
    spawn(sandbox, "hapi", argv, dict(os.environ), data)
    note(f"starting on {sandbox.fhir_url} (H2 file database {data / 'fhir.mv.db'})")
    return True


def wait_hapi(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    wait_for(
        lambda: fhir_metadata_ok(sandbox),
        timeout_s=HAPI_READY_S,
        what="HAPI FHIR /metadata",
        sandbox=sandbox,
        services=("hapi",),
        interval_s=1.0,
    )
    note(f"{sandbox.fhir_url}/metadata answers")


# --- Orthanc -------------------------------------------------------------------------------


def orthanc_ok(sandbox: Sandbox) -> bool | None:
    return True if requests.get(f"{sandbox.orthanc_url}/system", timeout=2).ok else None


def start_orthanc(sandbox: Sandbox, note: Callable[[str], None]) -> None:
    if read_pid(sandbox, "orthanc") is not None:
        note(f"already running on {sandbox.orthanc_url}")
        return
    if not ORTHANC_BIN.exists() or not DICOMWEB_PLUGIN.exists():
        raise SandboxError(
            f"Orthanc or its DICOMweb plugin is missing ({ORTHANC_BIN}, {DICOMWEB_PLUGIN}): "
            "run bash scripts/install.sh"
        )
    # Orthanc 1.10 listens on every interface (no bind-address option) and refuses
    # non-loopback clients (RemoteAccessAllowed false); check the port on all of them.
    require_port(sandbox.config.orthanc_port, "Orthanc", "--orthanc-port", host="0.0.0.0")
    work = sandbox.path("orthanc")
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "dipro-sandbox",
        "StorageDirectory": str(work / "storage"),
        "IndexDirectory": str(work / "index"),
        "HttpPort": sandbox.config.orthanc_port,
        "RemoteAccessAllowed": False,
        "DicomServerEnabled": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
    }
    (work / "orthanc.json").write_text(json.dumps(config, indent=2))
    spawn(sandbox, "orthanc", [str(ORTHANC_BIN), str(work / "orthanc.json")], dict(os.environ),
          work)  # fmt: skip
    wait_for(
        lambda: orthanc_ok(sandbox),
        timeout_s=30,
        what="Orthanc /system",
        sandbox=sandbox,
        services=("orthanc",),
        interval_s=0.1,
    )
    note(f"{sandbox.dicomweb_url}")
