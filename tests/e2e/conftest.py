"""Airflow environment for the DAG tests: a throwaway AIRFLOW_HOME with a SQLite metadata DB.

Airflow reads its configuration when it is first imported, so the environment is set here at
import time, before any test module imports ``airflow``. The home is always a fresh temporary
folder (``DIPRO_TEST_AIRFLOW_HOME`` may name another one): these tests must never touch a
developer's real Airflow installation or its database. Nothing outside ``tests/e2e`` imports
Airflow, and these variables mean nothing to the rest of the suite.

Fixtures:
    airflow_env: the environment, with the metadata DB migrated once per session
        (``airflow db migrate``), ready for ``dag.test(logical_date=..., run_conf=...)``.
    dipro_dag: the ``dipro_nightly`` DAG parsed from ``dags/`` by a real ``DagBag``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow.sdk import DAG

REPO = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO / "dags"
VENV_BIN = Path(sys.executable).parent


def _make_home() -> Path:
    chosen = os.environ.get("DIPRO_TEST_AIRFLOW_HOME")
    if chosen:
        return Path(chosen)
    home = Path(tempfile.mkdtemp(prefix="dipro-airflow-home-"))
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    return home


if "airflow" in sys.modules:  # pragma: no cover - a guard against a misordered import
    raise RuntimeError("airflow was imported before tests/e2e/conftest.py configured it")

AIRFLOW_HOME = _make_home()
AIRFLOW_ENVIRON = {
    "AIRFLOW_HOME": str(AIRFLOW_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    "AIRFLOW__CORE__PARALLELISM": "2",
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
    "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(AIRFLOW_HOME / "logs"),
}
os.environ.update(AIRFLOW_ENVIRON)
# The DAG processor and the task runners put the DAG bundle's folder on ``sys.path`` (Airflow 3
# BundleDagBag), which is how the DAG files import ``_dipro_common``; do the same here.
if str(DAGS_FOLDER) not in sys.path:
    sys.path.append(str(DAGS_FOLDER))


@dataclass(frozen=True, slots=True)
class AirflowEnv:
    """The test Airflow installation.

    Attributes:
        home: ``AIRFLOW_HOME`` (a temporary folder).
        dags_folder: The project's ``dags/``.
        environ: A full environment for ``airflow`` subprocesses (venv ``bin`` first on PATH,
            the checkout and ``dags/`` on PYTHONPATH, the latter as the DAG processor would put
            it on ``sys.path``).
    """

    home: Path
    dags_folder: Path
    environ: dict[str, str]


def airflow_subprocess_environ() -> dict[str, str]:
    """The current environment plus the Airflow settings, for ``airflow`` subprocesses."""
    environ = {**os.environ, **AIRFLOW_ENVIRON}
    environ["PATH"] = f"{VENV_BIN}{os.pathsep}{environ.get('PATH', '')}"
    # The checkout's own package first: an editable install may point at another checkout
    # (a git worktree), and the subprocess must run the code under test.
    environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), str(DAGS_FOLDER), environ.get("PYTHONPATH", "")) if p
    )
    return environ


@pytest.fixture(scope="session")
def airflow_env() -> AirflowEnv:
    """The Airflow environment with a migrated metadata database (once per session)."""
    environ = airflow_subprocess_environ()
    done = subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"airflow db migrate failed:\n{done.stderr[-4000:]}"
    return AirflowEnv(home=AIRFLOW_HOME, dags_folder=DAGS_FOLDER, environ=environ)


@pytest.fixture(scope="session")
def dipro_dag() -> DAG:
    """``dipro_nightly`` as parsed by a real DagBag from ``dags/`` (no database needed)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}, bag.import_errors
    dag: DAG = bag.dags["dipro_nightly"]
    return dag
