"""The DiPro page on a real Airflow 3 API server: the plugin loads, its links are registered,
and Airflow's auth guards every page.

``airflow api-server`` runs on loopback with the project's plugins folder, on the session's
SQLite metadata database; the results database is a fresh PostgreSQL one with three recorded
runs (tests/ui_nights.py), named by the Airflow connection ``dipro_results_db`` (as an
``AIRFLOW_CONN_`` variable), as the DAGs name it (tests/e2e/dipro_page.py starts both). Pages
are fetched over HTTP like a browser or a script would: without a login, with a forged token,
and with a token from ``POST /auth/token``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import create_engine

from dipro_fhir.store import ResultStore
from tests.checkpoints import write_tiny_checkpoint
from tests.e2e.conftest import AirflowEnv
from tests.e2e.dipro_page import ApiServer, page_api_server, results_database
from tests.servers.postgres import PgServer
from tests.ui_nights import MODEL_NAME, MODEL_VERSION, SeededRun, seed_nights

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@dataclass(frozen=True)
class PageServer:
    """The API server with the plugin, its admin token and the recorded runs."""

    server: ApiServer
    runs: list[SeededRun]

    @property
    def token(self) -> str:
        return self.server.token

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return self.server.get(path, **kwargs)

    def authed(self, path: str) -> requests.Response:
        return self.server.authed(path)


@pytest.fixture(scope="module")
def results_url(pg_server: PgServer) -> Iterator[str]:
    """A results database of this module, migrated; dropped afterwards."""
    with results_database(pg_server) as url:
        yield url


@pytest.fixture(scope="module")
def page_server(
    airflow_env: AirflowEnv, results_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PageServer]:
    """``airflow api-server`` with ``plugins/`` and a results database of three runs."""
    work = tmp_path_factory.mktemp("dipro-page")
    engine = create_engine(results_url)
    runs = seed_nights(ResultStore(engine))
    engine.dispose()
    checkpoint = write_tiny_checkpoint(work / "ckpt", name=MODEL_NAME, version=MODEL_VERSION)
    environ = {
        "DIPRO_MODEL__CHECKPOINT": str(checkpoint),
        "DIPRO_MODEL__MIN_VALIDATION_PATIENTS": "10",
    }
    with page_api_server(airflow_env, results_url, work, environ) as server:
        yield PageServer(server, runs)


def test_every_page_refuses_a_request_without_a_valid_login(page_server: PageServer) -> None:
    second = page_server.runs[1]
    paths = ["/dipro/", f"/dipro/runs/{second.run_id}", f"/dipro/patients/{second.scored[0]}",
             "/dipro/monitoring"]  # fmt: skip
    for path in paths:
        refused = page_server.get(path)
        assert refused.status_code == 401, (path, refused.status_code, refused.text[:200])
        assert second.scored[0] not in refused.text
        forged = page_server.get(path, headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code == 403, (path, forged.status_code)
    browser = page_server.get(
        "/dipro/runs/x", headers={"Accept": "text/html"}, allow_redirects=False
    )
    assert browser.status_code == 303
    assert browser.headers["location"].startswith("/auth/login?next=")
    for path in paths:
        allowed = page_server.authed(path)
        assert allowed.status_code == 200, (path, allowed.status_code, allowed.text[:300])


def test_pages_show_the_results_database_through_the_dags_connection(
    page_server: PageServer,
) -> None:
    first, second, manual = page_server.runs
    nights = page_server.authed("/dipro/").text
    for run in (first, second, manual):
        assert f'href="/dipro/runs/{run.run_id}"' in nights
    night = page_server.authed(f"/dipro/runs/{second.run_id}").text
    assert "source-unavailable" in night
    assert "Validated: passes the validation gate" in night
    # Each run's tab in the Airflow UI leads to its night.
    tab = page_server.get(
        f"/dipro/airflow-runs/dipro_nightly/{second.dag_run_id}",
        headers={"Authorization": f"Bearer {page_server.token}"},
        allow_redirects=False,
    )
    assert tab.status_code == 303
    assert tab.headers["location"] == f"/dipro/runs/{second.run_id}"
    patient = page_server.authed(f"/dipro/patients/{second.scored[2]}").text
    assert second.as_of.strftime("%Y-%m-%d %H:%M UTC") in patient


def test_the_plugin_registers_the_page_and_its_links_in_the_ui(page_server: PageServer) -> None:
    listed = page_server.authed("/api/v2/plugins")
    assert listed.status_code == 200, listed.text
    (plugin,) = [p for p in listed.json()["plugins"] if p["name"] == "dipro"]
    assert [(a["url_prefix"], a["name"]) for a in plugin["fastapi_apps"]] == [
        ("/dipro", "DiPro results")
    ]
    views = {v["destination"]: v for v in plugin["external_views"]}
    assert set(views) == {"nav", "dag", "dag_run"}
    assert views["dag_run"]["href"] == "dipro/airflow-runs/{DAG_ID}/{RUN_ID}"
    errors = page_server.authed("/api/v2/plugins/importErrors").json()
    assert errors["total_entries"] == 0, errors
