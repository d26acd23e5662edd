"""``dipro_monitor`` under ``dag.test()``: outcomes gathered, the night computed and written,
and a breach failing the ``check`` task (only it) with one line naming metric, window, value
and threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dipro_fhir.synth.stream import nightly_world, write_night
from tests.e2e.conftest import DAGS_FOLDER, AirflowEnv
from tests.unit.monitoring.worlds import record_night, sqlite_store

FIRST = datetime(2026, 7, 1, 2, tzinfo=UTC)


@pytest.mark.e2e
@pytest.mark.slow
def test_monitor_dag_writes_the_night_and_fails_check_on_a_breach(
    airflow_env: AirflowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    world = nightly_world(nights=8, first_night=FIRST, admissions_per_day=4, seed=8)
    store = sqlite_store(tmp_path)
    for k in range(6):  # scores that say nothing: the same risk for everyone
        record_night(store, world.view(world.night(k)), world.night(k))
    night = world.night(6)
    write_night(world, night, tmp_path / "night")
    for name, value in {
        "DIPRO_STORE__URL": store.engine.url.render_as_string(hide_password=False),
        "DIPRO_FHIR__NDJSON_DIR": str(tmp_path / "night"),
        "DIPRO_MODEL__CHECKPOINT": str(tmp_path / "no-checkpoint"),
        "DIPRO_MONITOR__MIN_OUTCOMES": "5",
        "DIPRO_MONITOR__MIN_EVENTS": "1",
        "DIPRO_MONITOR__MIN_AUROC": "0.9",
    }.items():
        monkeypatch.setenv(name, value)
    dag = DagBag(dag_folder=str(DAGS_FOLDER)).dags["dipro_monitor"]
    as_of = night + timedelta(hours=4)
    run = dag.test(logical_date=as_of, run_conf={"as_of": as_of.isoformat()})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states == {"gather_outcomes": "success", "compute": "success", "check": "failed"}
    with store.engine.connect() as conn:
        nights = conn.execute(sa.text("SELECT status FROM monitor_nights")).scalars().all()
        alerts = conn.execute(
            sa.text("SELECT kind, metric, window, message FROM monitor_alerts")
        ).all()
        known = conn.execute(
            sa.text("SELECT count(*) FROM outcomes WHERE status = 'known'")
        ).scalar()
    assert nights == ["breach"]
    assert known
    assert ("discrimination", "auroc", "30d") in {a[:3] for a in alerts}
    assert any("AUROC 0.500" in a[3] and "threshold 0.900" in a[3] for a in alerts)
