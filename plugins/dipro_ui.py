"""The DiPro page in the Airflow 3 UI: an Airflow plugin (put this folder in the plugins folder).

It mounts :func:`dipro_fhir.ui.app.create_app` on the API server under ``/dipro`` (a FastAPI
app of the plugin) and adds three links to the UI (external views, rendered in a frame):
"DiPro" in the navigation (the night list), a tab on each DAG (its runs) and a tab on each
DAG run (the night it recorded). docs/ui.md describes the pages.

Like ``dags/_dipro_common.py``, this file is the only place where the page meets Airflow
(``dipro_fhir`` never imports Airflow): every route depends on Airflow's own FastAPI security
dependency, ``requires_access_dag("GET", RUN)`` on ``dipro_nightly``, so whoever may not read
that DAG's runs (or is not logged in) is refused; a browser that is not logged in is sent to
the auth manager's login page. The results database is the one the DAGs use: the Airflow
connection ``dipro_results_db`` when it exists, else ``DIPRO_STORE__URL``.

Airflow imports plugins in every process, task processes included, so this module imports
nothing heavy: the FastAPI app is built on the first request the API server routes to it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from airflow.plugins_manager import AirflowPlugin

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    from dipro_fhir.core.settings import Settings

    Scope = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

URL_PREFIX = "/dipro"
DAG_ID = "dipro_nightly"
RESULTS_DB_CONN_ID = "dipro_results_db"


def results_settings() -> Settings:
    """The ``DIPRO_*`` settings, the results database from the DAGs' connection if it exists."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection
    from pydantic import SecretStr

    from dipro_fhir.core.settings import Settings, StoreSettings

    settings = Settings()
    try:
        conn = Connection.get_connection_from_secrets(RESULTS_DB_CONN_ID)
    except AirflowNotFoundException:
        return settings
    url = _dags_common().results_db_url(conn)
    return settings.model_copy(update={"store": StoreSettings(url=SecretStr(url))})


def _dags_common() -> Any:
    """``dags/_dipro_common.py`` (the DAGs' connection rules), from the DAG folder."""
    try:
        import _dipro_common
    except ImportError:
        from dipro_fhir.core.shipped import dags_folder

        sys.path.append(str(dags_folder()))
        import _dipro_common
    return _dipro_common


def build_app() -> Any:
    """The DiPro page behind Airflow's auth (imports the API server's security module)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends

    from dipro_fhir.ui.app import create_app

    def login_url(next_url: str) -> str:
        return str(get_auth_manager().get_url_login(next_url=next_url))

    readers_only = Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=DAG_ID))
    return create_app(results_settings, dependencies=[readers_only], login_url=login_url)


class LazyApp:
    """An ASGI app that builds :func:`build_app` on its first request and then is it."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = build_app()
        await self._app(scope, receive, send)


class DiproUiPlugin(AirflowPlugin):
    """Registers the DiPro page and its links in the Airflow UI."""

    name = "dipro"
    fastapi_apps = [  # noqa: RUF012 (AirflowPlugin's attributes are class lists)
        {"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "DiPro results"}
    ]
    external_views = [  # noqa: RUF012
        {
            "name": "DiPro",
            "href": "dipro/",
            "destination": "nav",
            "url_route": "dipro",
            "nav_top_level": True,
        },
        {
            "name": "DiPro nights",
            "href": "dipro/?pipeline={DAG_ID}",
            "destination": "dag",
            "url_route": "dipro-nights",
        },
        {
            "name": "DiPro night",
            "href": "dipro/airflow-runs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "dipro-night",
        },
    ]
