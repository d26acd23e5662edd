"""``dipro_nightly`` end to end under ``dag.test()``: the real FHIR server, Orthanc, PostgreSQL.

A synthetic cohort is loaded through FHIR transactions and STOW-RS; the DAG plans the active
encounters, extracts over FHIR search and DICOMweb, scores with a real (tiny, untrained)
checkpoint, and writes RiskAssessments to the FHIR server and rows to PostgreSQL. A second run
of the same logical date must change nothing; a run with two patient ids scores exactly those.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from tests.checkpoints import write_tiny_checkpoint
from tests.e2e.conftest import DAGS_FOLDER, AirflowEnv
from tests.servers.orthanc import OrthancServer

AS_OF = datetime(2026, 6, 10, 2, tzinfo=UTC)
N_PATIENTS = 6


@pytest.fixture(scope="module")
def loaded_cohort(fhir_server: Any, orthanc: OrthancServer) -> Iterator[list[Any]]:
    from dipro_fhir.fhir.client import FhirClient
    from dipro_fhir.synth import generate_cohort
    from dipro_fhir.synth.load import load_into_servers

    fhir_server.reset()
    orthanc.reset()
    patients = list(
        generate_cohort(
            N_PATIENTS,
            seed=21,
            start=AS_OF - timedelta(days=4),
            admission_span_days=3.5,
            reference_time=AS_OF,
            id_prefix="night",
        )
    )
    with FhirClient(fhir_server.base_url) as client:
        load_into_servers(patients, client, orthanc.dicomweb_url, image_size=(192, 192))
    yield [p.truth for p in patients]
    fhir_server.reset()
    orthanc.reset()


@pytest.fixture
def configured(
    loaded_cohort: list[Any],
    fhir_server: Any,
    orthanc: OrthancServer,
    migrated_pg_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> str:

    write_tiny_checkpoint(tmp_path / "checkpoint", name="dipro-e2e", version="0.0.1")
    environ = {
        "DIPRO_FHIR__BASE_URL": fhir_server.base_url,
        "DIPRO_DICOMWEB__BASE_URL": orthanc.dicomweb_url,
        "DIPRO_STORE__URL": migrated_pg_url,
        "DIPRO_MODEL__CHECKPOINT": str(tmp_path / "checkpoint"),
        "DIPRO_RUN__STAGING_DIR": str(tmp_path / "staging"),
        "DIPRO_RUN__CHUNK_SIZE": "3",
        # Loaded today: `lastUpdated` is the load time; availability is read from `issued`.
        "DIPRO_RUN__AVAILABILITY": "issued",
        "DIPRO_WRITEBACK__TARGET": "fhir",
        "DIPRO_TASK_RETRIES": "0",
    }
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    for name in ("DIPRO_FHIR__NDJSON_DIR", "DIPRO_DICOMWEB__FOLDER"):
        monkeypatch.delenv(name, raising=False)
    return migrated_pg_url


def _run(logical_date: datetime, conf: dict[str, Any] | None = None) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["dipro_nightly"]
    run = dag.test(logical_date=logical_date, run_conf=conf or {})
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert run.state == "success", states
    return run


def _server_state(base_url: str) -> dict[str, tuple[str, ...]]:
    """Every RiskAssessment and Provenance on the server with its version."""
    from dipro_fhir.fhir.client import FhirClient

    with FhirClient(base_url) as client:
        return {
            rtype: tuple(
                sorted(f"{r['id']}@{r['meta']['versionId']}" for r in client.search(rtype, {}))
            )
            for rtype in ("RiskAssessment", "Provenance", "Device")
        }


def _score_rows(url: str, as_of: datetime) -> dict[str, int]:
    from dipro_fhir.store.models import ScoreRow

    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(ScoreRow.patient_id, func.count())
            .where(ScoreRow.as_of == as_of)
            .group_by(ScoreRow.patient_id)
        ).all()
    engine.dispose()
    return {str(p): int(n) for p, n in rows}


def _active(truths: list[Any], as_of: datetime) -> set[str]:
    return {t.patient_id for t in truths if t.admitted <= as_of < t.discharged}


@pytest.mark.e2e
@pytest.mark.slow
def test_nightly_scores_every_active_patient_and_a_rerun_changes_nothing(
    airflow_env: AirflowEnv, configured: str, loaded_cohort: list[Any], fhir_server: Any
) -> None:
    from dipro_fhir.fhir.client import FhirClient

    expected = _active(loaded_cohort, AS_OF)
    assert len(expected) >= 3, "the cohort should have several patients in the ICU tonight"
    _run(AS_OF)
    rows = _score_rows(configured, AS_OF)
    assert set(rows) == expected
    admitted = {t.patient_id: t.admitted for t in loaded_cohort}
    with FhirClient(fhir_server.base_url) as client:
        for patient_id in expected:
            found = list(client.search("RiskAssessment", {"subject": f"Patient/{patient_id}"}))
            tasks = {r["code"]["coding"][0]["code"]: r for r in found}
            assert {"mortality", "los"} <= set(tasks), (patient_id, sorted(tasks))
            assert all(r["occurrenceDateTime"].startswith("2026-06-10T02:00:00") for r in found)
            # Length of stay is predicted for the stay that began at admission.
            los_start = tasks["los"]["prediction"][0]["whenPeriod"]["start"]
            assert los_start == admitted[patient_id].strftime("%Y-%m-%dT%H:%M:%SZ")
    before = _server_state(fhir_server.base_url)
    assert before["RiskAssessment"]
    assert before["Provenance"]
    assert before["Device"]

    _run(AS_OF)  # the same night again
    assert _server_state(fhir_server.base_url) == before
    assert _score_rows(configured, AS_OF) == rows


@pytest.mark.e2e
@pytest.mark.slow
def test_run_with_two_patient_params_scores_exactly_those(
    airflow_env: AirflowEnv, configured: str, loaded_cohort: list[Any]
) -> None:
    as_of = AS_OF + timedelta(hours=6)
    chosen = sorted(_active(loaded_cohort, as_of))[:2]
    assert len(chosen) == 2
    _run(as_of, {"patient_ids": chosen, "as_of": as_of.isoformat()})
    assert set(_score_rows(configured, as_of)) == set(chosen)


@pytest.mark.e2e
@pytest.mark.slow
def test_bulk_mode_gives_the_same_results_as_rest_mode(
    airflow_env: AirflowEnv, configured: str, loaded_cohort: list[Any], fhir_server: Any
) -> None:
    """The same night in ``bulk`` mode (a Group the plan writes, ``$export`` waited for in
    the trigger, NDJSON into staging) converges on REST mode's run: every RiskAssessment
    and Provenance keeps its version (same scores, same sources) and the rows are equal."""
    as_of = AS_OF + timedelta(hours=12)
    expected = _active(loaded_cohort, as_of)
    _run(as_of, {"as_of": as_of.isoformat(), "extraction_mode": "rest"})
    rest_rows = _score_rows(configured, as_of)
    rest_state = _server_state(fhir_server.base_url)
    assert set(rest_rows) == expected

    bulk = _run(as_of, {"as_of": as_of.isoformat(), "extraction_mode": "bulk"})

    export = next(ti for ti in bulk.get_task_instances() if ti.task_id == "bulk_export")
    assert str(export.state) == "success"
    assert _score_rows(configured, as_of) == rest_rows
    assert _server_state(fhir_server.base_url) == rest_state


@pytest.mark.e2e
@pytest.mark.slow
def test_shadow_mode_writes_every_row_and_no_fhir_resource(
    airflow_env: AirflowEnv,
    configured: str,
    loaded_cohort: list[Any],
    fhir_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dipro_fhir.store.models import Run

    monkeypatch.setenv("DIPRO_WRITEBACK__SHADOW", "true")
    as_of = AS_OF + timedelta(hours=18)
    expected = _active(loaded_cohort, as_of)
    assert expected
    before = _server_state(fhir_server.base_url)
    _run(as_of, {"as_of": as_of.isoformat()})
    assert _server_state(fhir_server.base_url) == before  # not one resource written
    rows = _score_rows(configured, as_of)
    assert set(rows) == expected
    assert min(rows.values()) >= 1 + 4  # mortality and the four length-of-stay bins at least
    engine = create_engine(configured)
    with engine.connect() as conn:
        modes = conn.execute(select(Run.mode).where(Run.as_of == as_of)).scalars().all()
    engine.dispose()
    assert modes == ["shadow"]
