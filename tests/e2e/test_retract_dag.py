"""``dipro_retract`` end to end under ``dag.test()``: a night of ``dipro_nightly`` on the real
servers, then one patient's results retracted by the DAG; running the night again (the
nightly DAG) does not bring them back."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.conftest import DAGS_FOLDER, AirflowEnv

# The night's fixtures (pytest registers imported fixtures under their own names).
from tests.e2e.test_nightly_against_servers import AS_OF, _active, configured, loaded_cohort  # noqa: F401

NIGHT = AS_OF + timedelta(hours=12)


def _run(dag_id: str, conf: dict[str, Any]) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags[dag_id]
    run = dag.test(logical_date=NIGHT, run_conf=conf)
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in run.get_task_instances()}
    assert run.state == "success", states


def _statuses(base_url: str, patient: str) -> Counter[str]:
    from dipro_fhir.fhir.client import FhirClient

    with FhirClient(base_url) as client:
        found = client.search(
            "RiskAssessment", {"subject": f"Patient/{patient}", "date": "2026-06-10T14:00:00Z"}
        )
        return Counter(r["status"] for r in found)


@pytest.mark.e2e
@pytest.mark.slow
def test_retract_dag_retracts_one_patient_and_the_night_again_keeps_it_retracted(
    airflow_env: AirflowEnv,
    configured: str,  # noqa: F811
    loaded_cohort: list[Any],  # noqa: F811
    fhir_server: Any,
) -> None:
    chosen = sorted(_active(loaded_cohort, NIGHT))[:2]
    assert len(chosen) == 2
    night = {"patient_ids": chosen, "as_of": NIGHT.isoformat()}
    _run("dipro_nightly", night)
    before = {p: _statuses(fhir_server.base_url, p) for p in chosen}
    _run(
        "dipro_retract",
        {
            "model_version": "0.0.1",
            "reason": "wrong patient linkage",
            "since": NIGHT.isoformat(),
            "until": (NIGHT + timedelta(minutes=1)).isoformat(),
            "patient_ids": chosen[:1],
        },
    )
    after = {p: _statuses(fhir_server.base_url, p) for p in chosen}
    _run("dipro_nightly", night)  # the same night again
    again = {p: _statuses(fhir_server.base_url, p) for p in chosen}
    engine = create_engine(configured)
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                text(
                    "SELECT patient_id, count(*) FROM scores WHERE retracted_at IS NOT NULL "
                    "GROUP BY patient_id"
                )
            ).all()
        )
    engine.dispose()
    n = sum(before[chosen[0]].values())
    assert n >= 2
    assert set(before[chosen[0]]) == {"final"}
    assert after == {chosen[0]: Counter({"entered-in-error": n}), chosen[1]: before[chosen[1]]}
    assert again == after
    assert set(rows) == {chosen[0]}
    assert rows[chosen[0]] > 0
    print(f"retract DAG: before {before}, after {after}, night again {again}, rows {rows}")
