"""Retractions in PostgreSQL: marks are set once, cover exactly the request, and a
withdrawn version is refused by the run's plan."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dipro_fhir.core.errors import ConfigError
from dipro_fhir.core.settings import Settings, StoreSettings
from dipro_fhir.core.timeline import RunId
from dipro_fhir.run.retraction import refuse_withdrawn
from dipro_fhir.store import ResultStore
from dipro_fhir.store.retractions import RetractionRequest, RetractionStore
from tests.unit.writeback.scores import AS_OF, cohort_scores

pytestmark = pytest.mark.integration


def test_marks_cover_exactly_the_request_and_are_set_once(
    migrated_pg_url: str, tmp_path: Path
) -> None:
    engine = sa.create_engine(migrated_pg_url)
    store = ResultStore(engine)
    store.start_run(RunId("run-1"), as_of=AS_OF, model_name="dipro", model_version="1.0.0")
    store.record_chunk(RunId("run-1"), cohort_scores(3))
    later = AS_OF + timedelta(days=1)
    store.start_run(RunId("run-2"), as_of=later, model_name="dipro", model_version="1.0.0")
    store.record_chunk(RunId("run-2"), cohort_scores(3, as_of=later, run_id="run-2"))
    retractions = RetractionStore(engine)
    one = RetractionRequest(
        "1.0.0", "wrong linkage", since=AS_OF, until=later, patients=("pat-0001",)
    )
    retractions.begin(one, "dipro")
    assert retractions.mark_matching(one) == 26
    assert retractions.mark_matching(one) == 0  # set once
    assert retractions.retracted_count("1.0.0") == 26
    assert not retractions.withdrawn("1.0.0", AS_OF)  # one patient only: later nights run
    settings = Settings(store=StoreSettings(url=SecretStr(migrated_pg_url)))
    refuse_withdrawn(settings, "1.0.0", later)
    everything = RetractionRequest("1.0.0", "model withdrawn", since=later)
    retractions.begin(everything, "dipro")
    assert retractions.mark_matching(everything) == 78
    assert retractions.withdrawn("1.0.0", later + timedelta(days=30))
    assert not retractions.withdrawn("1.0.0", AS_OF)  # before `since`
    with pytest.raises(ConfigError, match="retracted"):
        refuse_withdrawn(settings, "1.0.0", later + timedelta(days=2))
    # A re-recorded chunk (a night run again) does not un-retract its rows.
    store.record_chunk(RunId("run-2"), cohort_scores(3, as_of=later, run_id="run-2"))
    assert retractions.retracted_count("1.0.0") == 26 + 78
    engine.dispose()
