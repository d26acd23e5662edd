"""Smoke test: the real Airflow services start on loopback and serve the project's DAG.

``airflow api-server``, ``airflow scheduler --skip-serve-logs`` and ``airflow dag-processor``
run as separate processes on the session's SQLite metadata DB (``airflow standalone`` would
bind its log servers to all interfaces). The DAG processor parses ``dags/``; the REST API
(``GET /api/v2/dags``, with a JWT from ``POST /auth/token``) must then list ``dipro_nightly``.
All three processes are stopped at the end: SIGTERM to each process group, SIGKILL on timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.e2e.conftest import AirflowEnv

T = TypeVar("T")
COMMANDS = {
    "api-server": ["api-server"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}


@dataclass(frozen=True, slots=True)
class Stack:
    """The running services: base URL, admin token source and each process's log file."""

    base_url: str
    home: Path
    logs: dict[str, Path]
    processes: dict[str, subprocess.Popen[bytes]]

    def log_tails(self) -> str:
        """The end of every service's log, for assertion messages."""
        return "\n".join(
            f"--- {name}\n{path.read_text(errors='replace')[-1500:]}"
            for name, path in self.logs.items()
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(probe: Callable[[], T | None], timeout_s: float, what: str, stack: Stack) -> T:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dead = [n for n, p in stack.processes.items() if p.poll() is not None]
        assert not dead, f"{dead} exited while waiting for {what}\n{stack.log_tails()}"
        try:
            result = probe()
        except requests.RequestException:
            result = None
        if result is not None:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{stack.log_tails()}")


def _stop(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> int | None:
    """SIGTERM the process group (servers fork workers), then SIGKILL if it will not stop."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            return None
    return process.returncode


@pytest.fixture
def airflow_stack(airflow_env: AirflowEnv, tmp_path: Path) -> Iterator[Stack]:
    """api-server, scheduler and dag-processor on a free loopback port."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    environ = {
        **airflow_env.environ,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": "dipro-e2e-test-secret",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__SCHEDULER__STANDALONE_DAG_PROCESSOR": "True",
    }
    logs = {name: tmp_path / f"{name}.log" for name in COMMANDS}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, args in COMMANDS.items():
            with logs[name].open("wb") as log:
                processes[name] = subprocess.Popen(
                    [str(Path(environ["PATH"].split(os.pathsep)[0]) / "airflow"), *args],
                    env=environ,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        yield Stack(base_url, airflow_env.home, logs, processes)
    finally:
        codes = {name: _stop(p) for name, p in processes.items()}
        assert all(code is not None for code in codes.values()), f"had to SIGKILL: {codes}"


def _token(stack: Stack) -> str | None:
    passwords = stack.home / "simple_auth_manager_passwords.json.generated"
    if not passwords.exists():
        return None
    password = json.loads(passwords.read_text())["admin"]
    response = requests.post(
        f"{stack.base_url}/auth/token",
        json={"username": "admin", "password": password},
        timeout=5,
    )
    if response.status_code != 201:
        return None
    token: str = response.json()["access_token"]
    return token


DAG_IDS = {"dipro_nightly", "dipro_retract", "dipro_monitor"}


def _dag_ids(stack: Stack, token: str) -> set[str] | None:
    response = requests.get(
        f"{stack.base_url}/api/v2/dags",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    response.raise_for_status()
    dag_ids = {d["dag_id"] for d in response.json()["dags"]}
    return dag_ids if dag_ids >= DAG_IDS else None


def _dag_details(stack: Stack, token: str) -> dict[str, Any]:
    response = requests.get(
        f"{stack.base_url}/api/v2/dags/dipro_nightly/details",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    )
    response.raise_for_status()
    details: dict[str, Any] = response.json()
    return details


@pytest.mark.slow
def test_services_on_loopback_list_the_nightly_dag(airflow_stack: Stack) -> None:
    token = _wait_for(lambda: _token(airflow_stack), 60, "an API token", airflow_stack)
    dag_ids = _wait_for(
        lambda: _dag_ids(airflow_stack, token), 90, "the DAGs in /api/v2/dags", airflow_stack
    )
    assert dag_ids == DAG_IDS  # examples are off; only the project's DAGs
    details = _dag_details(airflow_stack, token)
    assert details["max_active_runs"] == 1
    assert details["catchup"] is False
    assert set(details["params"]) == {
        "patient_ids",
        "group_id",
        "as_of",
        "cohort",
        "model_version",
        "dry_run",
        "extraction_mode",
    }
    unauthenticated = requests.get(f"{airflow_stack.base_url}/api/v2/dags", timeout=5)
    assert unauthenticated.status_code == 401
