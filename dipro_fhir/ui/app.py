"""The DiPro page as a FastAPI app: the host mounts it and brings its own authentication.

Airflow's API server mounts it under ``/dipro`` (``plugins/dipro_ui.py``, an Airflow plugin;
this package never imports Airflow) and passes Airflow's auth-manager dependency in
``dependencies``: every route refuses a request the host's auth refuses. A browser that is not
logged in (it asks for HTML) is sent to ``login_url`` instead of a bare 401.

Routes (all ``GET``, HTML, read-only):

* ``/``: the nights, newest first (``?page=``, ``?per_page=``, ``?pipeline=``);
* ``/runs/{run_id}``: one night; ``/airflow-runs/{dag_id}/{dag_run_id}`` finds the night an
  Airflow DAG run recorded (the link on each run's page in the Airflow UI);
* ``/patients/{patient_id}``: a patient's latest assessments (the CDS Hooks cards link here);
* ``/monitoring``: the monitor's figures per model version (:mod:`dipro_fhir.monitoring`:
  performance over the nights, calibration, subgroups, drift, alerts); ``/metrics``: the
  same as OpenMetrics text.

``settings`` is called per request, so a results-database connection made after the server
started is picked up; one engine is kept per database URL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from dipro_fhir.core.settings import Settings
from dipro_fhir.core.timeline import PatientId, RunId
from dipro_fhir.store.results import ResultStore
from dipro_fhir.ui.layout import e, page

_LOG = logging.getLogger(__name__)
HTML = HTMLResponse


class _Stores:
    """One :class:`ResultStore` per results-database URL (engines are pools: keep them)."""

    def __init__(self, settings: Callable[[], Settings]) -> None:
        self._settings = settings
        self._stores: dict[str, ResultStore] = {}
        self._lock = threading.Lock()

    def __call__(self) -> tuple[ResultStore, Settings]:
        from dipro_fhir.run.connections import result_store

        settings = self._settings()
        url = settings.store.url.get_secret_value()
        with self._lock:
            if url not in self._stores:
                self._stores[url] = result_store(settings)
            return self._stores[url], settings


def _base(request: Request) -> str:
    """Where the app is mounted (links are built from it)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _airflow(request: Request) -> str:
    """Airflow's own root: the app is mounted one path segment below it."""
    return _base(request).rsplit("/", 1)[0]


def _message(request: Request, status: int, title: str, text: str) -> HTMLResponse:
    body = f"<h1>{e(title)}</h1><p>{e(text)}</p>"
    return HTML(page(title, body, _base(request)), status_code=status)


def create_app(
    settings: Callable[[], Settings],
    *,
    dependencies: Sequence[Any] = (),
    login_url: Callable[[str], str] | None = None,
) -> FastAPI:
    """The DiPro page (module docstring).

    Args:
        settings: Returns the settings to read the results database and model card with.
        dependencies: FastAPI dependencies every route runs first (the host's auth).
        login_url: The login page's URL for a ``next`` URL, for browsers refused with 401.
    """
    app = FastAPI(
        title="DiPro results", dependencies=list(dependencies), docs_url=None, redoc_url=None
    )
    stores = _Stores(settings)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "")
        if exc.status_code == 401 and wants_html and login_url is not None:
            return RedirectResponse(login_url(str(request.url)), status_code=303)
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)

    @app.exception_handler(SQLAlchemyError)
    async def unreachable(request: Request, exc: SQLAlchemyError) -> Response:
        _LOG.warning("DiPro page: the results database failed (%s)", type(exc).__name__)
        text = (
            f"The results database cannot be read ({type(exc).__name__}): check the "
            "dipro_results_db connection (or DIPRO_STORE__URL) and that it is migrated."
        )
        return _message(request, 503, "Results database unavailable", text)

    @app.get("/", response_class=HTML)
    def nights(
        request: Request,
        page_: int = Query(1, alias="page", ge=1),
        per_page: int = Query(20, ge=1, le=100),
        pipeline: str | None = Query(None, max_length=64),
    ) -> HTMLResponse:
        from dipro_fhir.monitoring.view import run_summaries
        from dipro_fhir.ui.night_pages import night_list
        from dipro_fhir.ui.queries import night_page

        store, _ = stores()
        listing = night_page(store, page=page_, per_page=per_page, pipeline=pipeline)
        monitored = run_summaries(store.engine, [n.run.id for n in listing.nights])
        return HTML(night_list(listing, _base(request), pipeline, monitored))

    @app.get("/runs/{run_id}", response_class=HTML)
    def one_night(request: Request, run_id: str) -> HTMLResponse:
        store, config = stores()
        run = store.run(RunId(run_id))
        if run is None:
            return _message(request, 404, "No such run", f"No run {run_id} is recorded.")
        return HTML(_night_html(store, config, run, request))

    @app.get("/airflow-runs/{dag_id}/{dag_run_id}", response_class=HTML)
    def airflow_run(request: Request, dag_id: str, dag_run_id: str) -> Response:
        from dipro_fhir.ui.queries import run_for_dag_run

        store, _ = stores()
        run = run_for_dag_run(store, dag_run_id, dag_id)
        if run is None:
            text = (
                f"Airflow run {dag_run_id} of {dag_id} recorded no run in the results database "
                "(a dry run, a run that has not planned yet, or another DAG)."
            )
            return _message(request, 404, "No results for this run", text)
        return RedirectResponse(f"{_base(request)}/runs/{run.id}", status_code=303)

    @app.get("/patients/{patient_id}", response_class=HTML)
    def patient(request: Request, patient_id: str) -> HTMLResponse:
        from dipro_fhir.ui.model_status import model_status
        from dipro_fhir.ui.patient_page import patient_view
        from dipro_fhir.ui.queries import latest_assessments

        store, config = stores()
        found = latest_assessments(store, PatientId(patient_id))

        def status(name: str, version: str) -> Any:
            return model_status(config.model, name, version)

        return HTML(patient_view(patient_id, found, status, _base(request)))

    @app.get("/monitoring", response_class=HTML)
    def monitoring(request: Request) -> HTMLResponse:
        from dipro_fhir.monitoring.view import load_view
        from dipro_fhir.ui.night_pages import monitoring_view

        store, _config = stores()
        return HTML(monitoring_view(load_view(store.engine), _base(request)))

    @app.get("/metrics")
    def metrics() -> Response:
        """The monitor's figures as OpenMetrics text (a site's Prometheus scrapes it)."""
        from dipro_fhir.monitoring.metrics import CONTENT_TYPE, openmetrics_text
        from dipro_fhir.monitoring.view import load_view

        store, _config = stores()
        return Response(openmetrics_text(load_view(store.engine)), media_type=CONTENT_TYPE)

    return app


def _night_html(store: ResultStore, config: Settings, run: Any, request: Request) -> str:
    from dipro_fhir.monitoring.view import night_of_run
    from dipro_fhir.reports.run_report import quality_text
    from dipro_fhir.ui.model_status import model_status
    from dipro_fhir.ui.night_pages import night_view
    from dipro_fhir.ui.queries import failure_counts, night, night_scores

    return night_view(
        night(store, run),
        night_scores(store.engine, run),
        failure_counts(store.engine, run.id),
        model_status(config.model, run.model_name, run.model_version),
        quality_text(store.engine, run),
        _base(request),
        _airflow(request),
        night_of_run(store.engine, run.id),
    )
