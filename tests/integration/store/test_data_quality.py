"""The data-quality summary in PostgreSQL (and SQLite): recorded, replaced, read back, compared."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dipro_fhir.core.timeline import NO_PATIENT, MappingIssue, RunId
from dipro_fhir.mapping.quality import DataQuality, compare
from dipro_fhir.store import ResultStore, upgrade_database
from dipro_fhir.store.quality import previous_success, read_data_quality, record_data_quality
from tests.unit.writeback.scores import AS_OF

pytestmark = pytest.mark.integration
TONIGHT = DataQuality.from_json(
    {
        "patients": 4,
        "unmapped_codes": {"https://hospital.example.org/lab|NA-PL": 7, "(no code)": 1},
        "code_displays": {"https://hospital.example.org/lab|NA-PL": "Natrium (Plasma)"},
        "variable_patients": {"heart_rate": 4, "sodium": 1},
        "image_problems": {"image-missing": 2},
        "unattributed_problems": {"invalid-json": 1},
        "image_flags": {"regions-from-thorax": 3},
    }
)


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultStore]:
    if request.param == "postgresql":
        url = request.getfixturevalue("migrated_pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'results.sqlite'}"
        upgrade_database(url)
    engine = sa.create_engine(url)
    yield ResultStore(engine)
    engine.dispose()


def _night(store: ResultStore, run: str, days: int, status: str) -> RunId:
    run_id = RunId(run)
    store.start_run(run_id, as_of=AS_OF + timedelta(days=days), model_name="m", model_version="1")
    store.finish_run(run_id, status=status)
    return run_id


def test_summary_round_trips_and_recording_twice_changes_nothing(store: ResultStore) -> None:
    run = _night(store, "run-a", 0, "success")
    rows = record_data_quality(store.engine, run, TONIGHT)
    assert record_data_quality(store.engine, run, TONIGHT) == rows
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM data_quality")).scalar_one() == rows
    assert read_data_quality(store.engine, run) == TONIGHT
    assert read_data_quality(store.engine, RunId("never")) is None


def test_tonight_is_compared_with_the_previous_successful_night(store: ResultStore) -> None:
    earlier = _night(store, "run-earlier", -2, "success")
    _night(store, "run-failed", -1, "failed")
    tonight = _night(store, "run-tonight", 0, "success")
    before = DataQuality.from_json({"patients": 4, "variable_patients": {"heart_rate": 4}})
    record_data_quality(store.engine, earlier, before)
    record_data_quality(store.engine, tonight, TONIGHT)
    previous = previous_success(
        store.engine, pipeline="dipro_nightly", model_name="m", before=AS_OF
    )
    assert previous == earlier
    change = compare(TONIGHT, before, previous)
    assert change.new_unmapped_codes == ("(no code)", "https://hospital.example.org/lab|NA-PL")
    assert change.coverage_change == {"sodium": 0.25}


def test_problems_of_no_patient_are_stored_with_an_empty_patient_id(store: ResultStore) -> None:
    run = _night(store, "run-orphans", 0, "running")
    issue = MappingIssue("invalid-json", "Observation", "Observation.ndjson at byte 12")
    store.record_chunk(run, [], [], {NO_PATIENT: [issue]})
    store.record_chunk(run, [], [], {NO_PATIENT: [issue]})  # a second chunk saw it too
    with store.engine.connect() as conn:
        found = conn.execute(sa.text("SELECT patient_id, code FROM data_problems")).all()
    assert found == [("", "invalid-json")]
