"""Outcomes of scored stays are gathered by the training label rules, once known; open stays
are pending (counted, never guessed); the scores they judge never change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from dipro_fhir.core.settings import embedded_settings
from dipro_fhir.monitoring.outcomes import gather_outcomes, unit_of
from dipro_fhir.store.outcomes import LabelledScore, labelled_scores
from dipro_fhir.synth.stream import NightlyWorld, nightly_world, write_night
from tests.unit.monitoring.worlds import (
    expected_progression,
    ndjson_source,
    record_night,
    sqlite_store,
)

FIRST = datetime(2026, 3, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def world() -> NightlyWorld:
    return nightly_world(nights=12, first_night=FIRST, admissions_per_day=3.0, seed=3)


def _rows(tmp_path: Path) -> list[LabelledScore]:
    engine = sqlite_store(tmp_path).engine
    return labelled_scores(
        engine, model_version="1", since=FIRST - timedelta(days=99), until=FIRST + timedelta(99)
    )


def test_outcomes_equal_the_truth_for_closed_stays_and_open_ones_are_pending(
    world: NightlyWorld, tmp_path: Path
) -> None:
    settings = embedded_settings(tmp_path)
    store = sqlite_store(tmp_path)
    scored = world.view(FIRST)
    record_night(store, scored, FIRST)
    record_night(store, scored, FIRST + timedelta(hours=3), kind="manual")  # not followed
    with store.engine.connect() as conn:
        scores_before = conn.execute(sa.text("SELECT * FROM scores ORDER BY id")).all()

    later = world.night(2)
    write_night(world, later, tmp_path / "night")
    counts = gather_outcomes(settings, later, ndjson_source(tmp_path / "night"))

    truth = {p.patient_id: p.truth for p in world.view(later)}
    open_stays = [p for p in scored if not p.stay.finished]
    seen = {p.patient_id: p for p in open_stays}
    assert counts.followed == len(open_stays)
    rows = {r.patient_id: r for r in _rows(tmp_path)}
    assert set(rows) == {p.patient_id for p in open_stays}
    closed = [pid for pid in rows if truth[pid].outcome_known]
    assert 0 < len(closed) < len(rows)  # some stays ended by then, some go on
    assert counts.known == len(closed)
    assert counts.pending == len(rows) - len(closed)
    for pid, row in rows.items():
        assert row.outcome is not None
        if truth[pid].outcome_known:
            assert row.outcome.status == "known"
            assert row.outcome.died == bool(truth[pid].mortality)
            assert row.outcome.los_days == pytest.approx(truth[pid].los_days, abs=1e-3)
            assert row.outcome.los_bin == (truth[pid].los_bin if truth[pid].los_bin >= 0 else None)
            if row.outcome.died:
                assert row.outcome.lead_time_h is not None
                assert row.outcome.lead_time_h > 0
            assert row.outcome.open_days is None
        else:
            assert (row.outcome.status, row.outcome.died, row.outcome.los_days) == (
                "pending",
                None,
                None,
            )
            # How long it has been open when the monitor looked: the horizon is judged by it.
            admitted = seen[pid].stay.admitted
            assert row.outcome.open_days == pytest.approx((later - admitted) / timedelta(days=1))
        assert row.outcome.progression == expected_progression(seen[pid])
        assert row.outcome.sex in ("female", "male")
        assert row.outcome.unit == "ICU"
    assert any(r.outcome is not None and r.outcome.progression for r in rows.values())
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT * FROM scores ORDER BY id")).all() == scores_before

    # A later night finds the rest; a known outcome is not looked up again.
    last = world.night(12) + timedelta(days=12)
    write_night(world, last, tmp_path / "last")
    again = gather_outcomes(settings, last, ndjson_source(tmp_path / "last"))
    assert again.followed == len(rows) - len(closed)
    assert {r.outcome.status for r in _rows(tmp_path) if r.outcome} == {"known"}


def test_a_patient_gone_from_fhir_is_missing(world: NightlyWorld, tmp_path: Path) -> None:
    settings = embedded_settings(tmp_path)
    store = sqlite_store(tmp_path)
    scored = [p for p in world.view(FIRST) if not p.stay.finished][:3]
    record_night(store, scored, FIRST)
    write_night(world.__class__(FIRST, 1, world.patients[:0]), FIRST, tmp_path / "empty")
    counts = gather_outcomes(settings, world.night(2), ndjson_source(tmp_path / "empty"))
    assert (counts.followed, counts.missing) == (3, 3)


def test_the_unit_is_the_last_location_then_the_encounter_type() -> None:
    moved = {
        "location": [
            {"location": {"reference": "Location/ward-3", "display": "Ward 3"}},
            {"location": {"reference": "Location/micu"}},
        ],
        "type": [{"coding": [{"code": "ICU"}]}],
    }
    assert unit_of(moved) == "micu"
    assert unit_of({"type": [{"coding": [{"code": "ICU"}]}]}) == "ICU"
    assert unit_of({}) == "unknown"
