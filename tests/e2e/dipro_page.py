"""The DiPro page's real server, shared by its e2e tests: a fresh PostgreSQL results database
and ``airflow api-server`` on loopback with the project's plugins folder, reading it through
the Airflow connection ``dipro_results_db`` (as an ``AIRFLOW_CONN_`` variable), as the DAGs
name it. The server runs on the session's SQLite metadata database; SimpleAuthManager's
generated ``admin`` password logs a browser in, ``POST /auth/token`` gives a token.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from dipro_fhir.store import upgrade_database
from tests.e2e.conftest import REPO, AirflowEnv
from tests.e2e.test_airflow_services import Stack, _free_port, _stop, _token, _wait_for
from tests.servers.postgres import PgServer, admin


@dataclass(frozen=True)
class ApiServer:
    """The running API server with the plugin, and an admin token."""

    stack: Stack
    token: str

    @property
    def password(self) -> str:
        """SimpleAuthManager's generated password of ``admin`` (the browser's login)."""
        passwords = self.stack.home / "simple_auth_manager_passwords.json.generated"
        password: str = json.loads(passwords.read_text())["admin"]
        return password

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(f"{self.stack.base_url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]

    def authed(self, path: str) -> requests.Response:
        return self.get(path, headers={"Authorization": f"Bearer {self.token}"})


@contextmanager
def results_database(pg_server: PgServer, prefix: str = "dipro_page") -> Iterator[str]:
    """A fresh, migrated results database; dropped afterwards. Yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin(pg_server, f'CREATE DATABASE "{name}"')
    try:
        upgrade_database(pg_server.url(name))
        yield pg_server.url(name)
    finally:
        admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def page_api_server(
    airflow_env: AirflowEnv, results_url: str, work: Path, environ: dict[str, str]
) -> Iterator[ApiServer]:
    """``airflow api-server`` with ``plugins/`` over ``results_url``; ``environ`` adds the
    ``DIPRO_*`` settings the page reads (the model checkpoint, ...)."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    full = {
        **airflow_env.environ,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API_AUTH__JWT_SECRET": "dipro-e2e-page-secret",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW_CONN_DIPRO_RESULTS_DB": json.dumps(
            {"conn_type": "postgres", "extra": {"sqlalchemy_url": results_url}}
        ),
        **environ,
        # This checkout's package first (another checkout may be installed in the venv).
        "PYTHONPATH": os.pathsep.join([str(REPO), airflow_env.environ["PYTHONPATH"]]),
    }
    log = work / "api-server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(full["PATH"].split(os.pathsep)[0]) / "airflow"), "api-server"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack = Stack(base_url, airflow_env.home, {"api-server": log}, {"api-server": process})
    try:
        token = _wait_for(lambda: _token(stack), 120, "an API token", stack)
        yield ApiServer(stack, token)
    finally:
        assert _stop(process) is not None, "had to SIGKILL the API server"
