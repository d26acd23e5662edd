"""Fixtures of the CDS Hooks tests: a results database with scores written through the real
:class:`ResultStore`, the deployed checkpoint, and the service on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import uvicorn
from fastapi import FastAPI

from dipro_fhir.cds.model_status import DeployedModelUse
from dipro_fhir.cds.service import create_app
from dipro_fhir.core.scores import ModelInfo
from dipro_fhir.core.settings import CdsSettings
from dipro_fhir.core.timeline import PatientId, RunId
from dipro_fhir.store import ResultStore
from tests.unit.writeback.scores import patient_scores

MODEL = ModelInfo("dipro", "1.0.0", "a" * 64)
UI_BASE = "https://airflow.hospital.test"
SMART_LAUNCH = "https://apps.hospital.test/dipro/launch"


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port from a thread; yield its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def engine(migrated_pg_url: str) -> Iterator[sa.Engine]:
    """The migrated results database of this test."""
    created = sa.create_engine(migrated_pg_url)
    yield created
    created.dispose()


Record = Callable[..., datetime]


@pytest.fixture
def record(engine: sa.Engine) -> Record:
    """Score a patient through the real ResultStore: ``record(patient, hours_ago, ...)``
    starts a run of that as-of time and records every outcome of every task; returns the
    as-of time."""
    store = ResultStore(engine)

    def write(
        patient: str,
        hours_ago: float,
        *,
        mode: str = "live",
        model: ModelInfo = MODEL,
        tasks: Sequence[str] = ("mortality", "los", "progression"),
        path: str = "pairs",
    ) -> datetime:
        as_of = datetime.now(UTC) - timedelta(hours=hours_ago)
        run = RunId(f"run-{patient}-{hours_ago}-{mode}-{model.version}")
        store.start_run(
            run, as_of=as_of, model_name=model.name, model_version=model.version, mode=mode
        )
        scores = [
            s
            for s in patient_scores(patient, model=model, as_of=as_of, run_id=run, path=path)
            if s.task in tasks
        ]
        ids = {(PatientId(patient), t): f"ra-{patient}-{t}" for t in tasks}
        store.record_chunk(run, scores, fhir_ids=ids)
        return as_of

    return write


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployed checkpoint: the shipped demo card (NOT FOR CLINICAL USE) as dipro 1.0.0."""
    from tests.checkpoints import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), name="dipro", version="1.0.0")


SETTINGS = CdsSettings(ui_base=UI_BASE, smart_launch_url=SMART_LAUNCH)


@pytest.fixture
def cds_url(engine: sa.Engine, checkpoint: Path) -> Iterator[str]:
    """The base URL of the service, unauthenticated, on loopback."""
    with serving(create_app(engine, SETTINGS, DeployedModelUse(checkpoint))) as url:
        yield url


def hook_call(patient: str, *, prefetch: Any = None, **context: str) -> dict[str, Any]:
    """A ``patient-view`` call as an EHR sends it."""
    call: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": "https://ehr.hospital.test/fhir",
        "context": {"userId": "Practitioner/abc", "patientId": patient, **context},
    }
    if prefetch is not None:
        call["prefetch"] = {"patient": prefetch}
    return call
