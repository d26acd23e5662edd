"""A monitored night is recorded once, whatever the number of times it is computed, and its
tables hold no patient identifier."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from dipro_fhir.core.settings import embedded_settings
from dipro_fhir.monitoring.night import compute_night
from dipro_fhir.monitoring.outcomes import gather_outcomes
from dipro_fhir.store.monitoring import read_figures, read_nights
from dipro_fhir.synth.stream import nightly_world, write_night
from tests.unit.monitoring.worlds import ndjson_source, record_night, sqlite_store

FIRST = datetime(2026, 3, 1, 2, tzinfo=UTC)
MONITOR_TABLES = ("monitor_nights", "monitor_figures", "monitor_drift", "monitor_alerts",
                  "outcomes", "input_profiles")  # fmt: skip


def test_a_night_computed_twice_is_recorded_once_without_patient_ids(tmp_path: Path) -> None:
    world = nightly_world(nights=6, first_night=FIRST, admissions_per_day=3.0, seed=4)
    settings = embedded_settings(tmp_path)
    store = sqlite_store(tmp_path)
    for k in range(4):
        record_night(store, world.view(world.night(k)), world.night(k), probability=0.1 + k / 10)
    night = world.night(4)
    write_night(world, night, tmp_path / "n4")
    gather_outcomes(settings, night, ndjson_source(tmp_path / "n4"))
    first = compute_night(settings, night)
    again = compute_night(settings, night)
    assert [r.night.id for r in first] == [r.night.id for r in again]
    nights = read_nights(store.engine)
    assert len(nights) == 1
    assert nights[0].counts["scores_30d"] == sum(
        sum(not p.stay.finished for p in world.view(world.night(k))) for k in range(4)
    )
    assert len(read_figures(store.engine, [nights[0].id])) == len(first[0].figures)

    ids = {p.patient_id for p in world.patients} | {p.stay.encounter_id for p in world.patients}
    with store.engine.connect() as conn:
        for table in MONITOR_TABLES:
            for row in conn.execute(sa.text(f"SELECT * FROM {table}")).all():
                text = " ".join(str(v) for v in row)
                assert not any(i in text for i in ids), table
