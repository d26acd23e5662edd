"""``dipro_monitor`` under ``dag.test()``: outcomes gathered, the night computed and written,
and a breach failing the ``check`` task (only it) with one line naming metric, window, value
and threshold."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import DAGS_FOLDER, AirflowEnv
from tests.unit.monitoring.worlds import uninformative_nights


@pytest.mark.e2e
@pytest.mark.slow
def test_monitor_dag_writes_the_night_and_fails_check_on_a_breach(
    airflow_env: AirflowEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    _world, night, store = uninformative_nights(tmp_path, monkeypatch)
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
