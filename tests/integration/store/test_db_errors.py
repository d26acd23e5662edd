"""Database errors on PostgreSQL: no parameters in messages, one refused patient only."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dipro_fhir.core.settings import Settings, StoreSettings
from dipro_fhir.core.timeline import PatientId, RunId
from dipro_fhir.run import connections
from dipro_fhir.store import ResultStore
from tests.unit.writeback.scores import AS_OF, cohort_scores

SECRET_ID = "pat-" + "9" * 70  # longer than any FHIR id: PostgreSQL refuses it


def test_database_errors_never_show_their_parameters(migrated_pg_url: str) -> None:
    engine = connections.engine(Settings(store=StoreSettings(url=SecretStr(migrated_pg_url))))
    with pytest.raises(sa.exc.DBAPIError) as raised, engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO runs (id, pipeline, as_of, model_name, model_version, status, "
                "counts, timings, started_at) VALUES (:id, 'p', now(), 'm', 'v', :s, '{}', "
                "'{}', now())"
            ),
            {"id": "r1", "s": SECRET_ID},  # status is VARCHAR(16)
        )
    assert "value too long" in str(raised.value)
    assert SECRET_ID not in str(raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)


def test_a_chunk_with_one_refused_patient_records_the_others(migrated_pg_url: str) -> None:
    engine = connections.engine(Settings(store=StoreSettings(url=SecretStr(migrated_pg_url))))
    store = ResultStore(engine)
    store.start_run(RunId("run-1"), as_of=AS_OF, model_name="dipro", model_version="1.0.0")
    scores = cohort_scores(3)
    bad = [
        replace(s, patient_id=PatientId(SECRET_ID)) for s in scores if s.patient_id.endswith("1")
    ]
    good = [s for s in scores if not s.patient_id.endswith("1")]
    counts = store.record_chunk(RunId("run-1"), [*good, *bad])
    assert {s.patient_id for s in store.scores()} == {s.patient_id for s in good}
    failures = store.failures(RunId("run-1"))
    assert [(f.patient_id, f.reason) for f in failures] == [("", "store-rejected")]
    assert counts.failures == 1
