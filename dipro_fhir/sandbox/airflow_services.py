"""Airflow 3 in the sandbox: its environment, the API server, scheduler, DAG processor and
triggerer, and the connections and pool made through the REST API."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable
from typing import Any

import requests

from dipro_fhir.sandbox.core import (
    ADMIN,
    AIRFLOW_ARGS,
    AIRFLOW_SERVICES,
    DAG_ID,
    DAGS_FOLDER,
    PLUGINS_FOLDER,
    POOL,
    VENV_BIN,
    Clock,
    Sandbox,
    SandboxError,
    read_pid,
    require_port,
    spawn,
    stop_groups,
    wait_for,
)
from dipro_fhir.sandbox.settings import changed_keys, forget_started, record_started

# --- Airflow -------------------------------------------------------------------------------


def _airflow_secrets(sandbox: Sandbox) -> dict[str, str]:
    """JWT secret and Fernet key shared by the three processes (kept in the sandbox)."""
    path = sandbox.airflow_home / "sandbox-secrets.json"
    if path.exists():
        values: dict[str, str] = json.loads(path.read_text())
        return values
    from cryptography.fernet import Fernet

    path.parent.mkdir(parents=True, exist_ok=True)
    values = {"jwt_secret": secrets.token_urlsafe(32), "fernet_key": Fernet.generate_key().decode()}
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def _ensure_password_file(sandbox: Sandbox) -> None:
    if sandbox.password_file.exists():
        return
    sandbox.password_file.write_text(json.dumps({ADMIN: secrets.token_urlsafe(12)}) + "\n")
    sandbox.password_file.chmod(0o600)


def airflow_environ(sandbox: Sandbox) -> dict[str, str]:
    """The environment of every Airflow process of the sandbox (and of ``sandbox.sh airflow``).

    Inherited ``AIRFLOW*`` and ``DIPRO_*`` variables are dropped: the sandbox is configured
    only by its own flags (:func:`airflow_settings`; ``--env KEY=VALUE`` adds to it).
    """
    base = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("AIRFLOW") or k.startswith("DIPRO_"))
    }
    return {
        **base,
        "PATH": f"{VENV_BIN}{os.pathsep}{base.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(DAGS_FOLDER), base.get("PYTHONPATH")) if p),
        **airflow_settings(sandbox),
    }


def airflow_settings(sandbox: Sandbox) -> dict[str, str]:
    """The ``AIRFLOW__*`` and ``DIPRO_*`` settings of the Airflow processes: the sandbox's own,
    then the saved ``--env`` settings over them."""
    c = sandbox.config
    home = sandbox.airflow_home
    secrets_ = _airflow_secrets(sandbox)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        # The DiPro page (Airflow plugin): /dipro on the API server, "DiPro" in the UI.
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(c.parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": secrets_["fernet_key"],
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(sandbox.password_file),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{sandbox.airflow_url}/execution/",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sandbox.results_db_url(sandbox.airflow_db),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(c.airflow_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": sandbox.airflow_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets_["jwt_secret"],
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
        # The DAG's settings: endpoints come from the connections made below.
        "DIPRO_GPU_POOL": POOL,
        "DIPRO_MODEL__CHECKPOINT": str(sandbox.checkpoint),
        "DIPRO_RUN__STAGING_DIR": str(sandbox.path("staging")),
        # Loaded after the fact: `lastUpdated` is the load time; availability from `issued`.
        "DIPRO_RUN__AVAILABILITY": "issued",
        "DIPRO_WRITEBACK__TARGET": "fhir",
        # Synthetic films: drawn in the geometric locator's convention (settings.SYNTHETIC_LOCATOR).
        "DIPRO_IMAGING__LOCATOR": "geometric",
        # HAPI keeps no audit log of its own: the sandbox shows the client's BALP trail.
        "DIPRO_AUDIT__ENABLED": "true",
        "DIPRO_TASK_RETRIES": str(c.task_retries),
        "DIPRO_RETRY_DELAY_S": str(c.retry_delay_s),
    }
    if c.chunk_size is not None:
        env["DIPRO_RUN__CHUNK_SIZE"] = str(c.chunk_size)
    env.update(c.extra_env)
    return env


def _spawn_airflow(sandbox: Sandbox, service: str) -> None:
    """Start one Airflow process and record the settings it starts with."""
    argv = [str(VENV_BIN / "airflow"), *AIRFLOW_ARGS[service]]
    spawn(sandbox, service, argv, airflow_environ(sandbox), sandbox.root)
    record_started(sandbox, service, airflow_settings(sandbox))


def stop_for_changed_settings(sandbox: Sandbox) -> list[str]:
    """Stop each running Airflow process whose settings changed since it started (an
    ``up --env``, another ``--parallelism`` ...), so that ``up`` starts it again with the new
    ones. Returns one line per stopped process, naming the keys (never their values)."""
    if not any(read_pid(sandbox, s) for s in AIRFLOW_SERVICES):
        return []
    settings = airflow_settings(sandbox)
    stale: dict[str, str] = {}
    for service in AIRFLOW_SERVICES:
        pid = read_pid(sandbox, service)
        if pid is None:
            continue
        keys = changed_keys(sandbox, service, settings)
        if keys is None:
            stale[service] = "started before its settings were recorded"
        elif keys:
            stale[service] = "changed: " + ", ".join(keys)
    if not stale:
        return []
    groups = {s: pid for s in stale if (pid := read_pid(sandbox, s)) is not None}
    outcome = stop_groups(groups)
    for service in stale:
        forget_started(sandbox, service)
    return [f"{s}: restarting to apply its settings ({why}; {outcome.get(s, 'stopped')})"
            for s, why in stale.items()]  # fmt: skip


def _airflow(sandbox: Sandbox, *args: str, timeout_s: float = 300) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "airflow"), *args],
        env=airflow_environ(sandbox),
        cwd=sandbox.root,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise SandboxError(
            f"airflow {' '.join(args)} failed:\n{(done.stdout + done.stderr)[-4000:]}"
        )
    return done.stdout


def airflow_token(sandbox: Sandbox) -> str | None:
    """A JWT for the REST API (SimpleAuthManager admin), or None while it cannot be had."""
    response = requests.post(
        f"{sandbox.airflow_url}/auth/token",
        json={"username": ADMIN, "password": sandbox.admin_password()},
        timeout=10,
    )
    if response.status_code not in (200, 201):
        return None
    token: str = response.json()["access_token"]
    return token


def _rest(sandbox: Sandbox, token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def _upsert(session: requests.Session, collection: str, key: str, body: dict[str, Any]) -> str:
    """POST into a collection; on 409 PATCH the existing item. Returns what was done."""
    response = session.post(collection, json=body, timeout=30)
    if response.status_code == 201:
        return "created"
    if response.status_code != 409:
        raise SandboxError(f"POST {collection} answered {response.status_code}: {response.text}")
    response = session.patch(f"{collection}/{key}", json=body, timeout=30)
    if response.status_code != 200:
        raise SandboxError(
            f"PATCH {collection}/{key} answered {response.status_code}: {response.text}"
        )
    return "updated"


def configure_airflow(sandbox: Sandbox, token: str, note: Callable[[str], None]) -> None:
    """The three connections and the scoring pool, through the REST API (idempotent)."""
    c = sandbox.config
    rest = _rest(sandbox, token)
    base = f"{sandbox.airflow_url}/api/v2"
    connections: list[dict[str, Any]] = [
        {
            "connection_id": "dipro_fhir",
            "conn_type": "http",
            "description": "dipro sandbox: HAPI FHIR R4",
            "extra": json.dumps({"base_url": sandbox.fhir_url}),
        },
        {
            "connection_id": "dipro_dicomweb",
            "conn_type": "http",
            "description": "dipro sandbox: Orthanc DICOMweb",
            "extra": json.dumps({"base_url": sandbox.dicomweb_url}),
        },
        {
            "connection_id": "dipro_results_db",
            "conn_type": "postgres",
            "description": "dipro sandbox: results database",
            "host": c.pg_host,
            "port": c.pg_port,
            "login": c.pg_user,
            "schema": c.results_db,
        },
    ]
    done = []
    for conn in connections:
        key = str(conn["connection_id"])
        done.append(f"{key} {_upsert(rest, f'{base}/connections', key, conn)}")
    pool = {
        "name": POOL,
        "slots": 1,
        "description": "dipro sandbox: one scoring task at a time (the GPU)",
        "include_deferred": False,
    }
    done.append(f"pool {POOL} (1 slot) {_upsert(rest, f'{base}/pools', POOL, pool)}")
    note("; ".join(done))


def _dag_parsed(sandbox: Sandbox, token: str) -> dict[str, Any] | None:
    rest = _rest(sandbox, token)
    errors = rest.get(f"{sandbox.airflow_url}/api/v2/importErrors", timeout=10)
    errors.raise_for_status()
    if errors.json()["total_entries"]:
        raise SandboxError(f"the DAG files do not import:\n{errors.text[:4000]}")
    response = rest.get(f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    dag: dict[str, Any] = response.json()
    return dag


def _scheduler_healthy(sandbox: Sandbox) -> bool | None:
    response = requests.get(f"{sandbox.airflow_url}/api/v2/monitor/health", timeout=10)
    if not response.ok:
        return None
    health = response.json()
    ok = all(
        (health.get(part) or {}).get("status") == "healthy"
        for part in ("metadatabase", "scheduler", "dag_processor", "triggerer")
    )
    return True if ok else None


def start_airflow_api(sandbox: Sandbox, clock: Clock) -> str:
    """Migrate the metadata DB, start the API server, make the connections and the pool.

    The scheduler starts later (:func:`start_airflow_scheduling`), once the data is loaded:
    the DAG is unpaused, so the scheduler starts tonight's run as soon as it sees the DAG.
    Returns a REST token.
    """
    sandbox.airflow_home.mkdir(parents=True, exist_ok=True)
    _ensure_password_file(sandbox)
    running = {s: read_pid(sandbox, s) for s in AIRFLOW_SERVICES}
    if not any(running.values()):
        with clock.step("airflow db migrate") as note:
            _airflow(sandbox, "db", "migrate")
            note(f"PostgreSQL database {sandbox.airflow_db}")
    with clock.step("airflow api-server") as note:
        service = "airflow-api-server"
        if running[service]:
            note(f"already running on {sandbox.airflow_url}")
        else:
            require_port(sandbox.config.airflow_port, "the Airflow API server", "--airflow-port")
            _spawn_airflow(sandbox, service)
        token = wait_for(
            lambda: airflow_token(sandbox),
            timeout_s=120,
            what="an Airflow API token",
            sandbox=sandbox,
            services=(service,),
        )
        note(f"{sandbox.airflow_url} answers")
    with clock.step("airflow connections and pool") as note:
        configure_airflow(sandbox, token, note)
    return token


def start_airflow_scheduling(sandbox: Sandbox, clock: Clock, token: str) -> None:
    """Start the scheduler, the DAG processor and the triggerer; wait until the DAG is parsed
    and unpaused."""
    with clock.step("airflow scheduler, dag-processor and triggerer") as note:
        for service in ("airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
            if read_pid(sandbox, service):
                note(f"{service} already running")
            else:
                _spawn_airflow(sandbox, service)
        dag = wait_for(
            lambda: _dag_parsed(sandbox, token),
            timeout_s=180,
            what=f"{DAG_ID} to be parsed",
            sandbox=sandbox,
            services=AIRFLOW_SERVICES,
        )
        if dag["is_paused"]:
            _rest(sandbox, token).patch(
                f"{sandbox.airflow_url}/api/v2/dags/{DAG_ID}", json={"is_paused": False}, timeout=10
            ).raise_for_status()
            note(f"unpaused {DAG_ID}")
        wait_for(
            lambda: _scheduler_healthy(sandbox),
            timeout_s=120,
            what="scheduler, dag-processor and triggerer heartbeats",
            sandbox=sandbox,
            services=AIRFLOW_SERVICES,
        )
        note(f"{DAG_ID} parsed and unpaused; scheduler, dag-processor and triggerer healthy")
