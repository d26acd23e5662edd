"""A world of nights: a stay seen at a time is what the generator makes with that reference
time; each drift changes only what it names, and only from its start."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.drift import LOCAL_SYSTEM, LabStops, ScannerFault, SubgroupOutcome, UnitSwitch
from dipro_fhir.synth.images import render_study
from dipro_fhir.synth.stream import NightlyWorld, night_start, nightly_world, write_night

FIRST = datetime(2026, 2, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def plain() -> NightlyWorld:
    return nightly_world(nights=6, first_night=FIRST, admissions_per_day=3, seed=31)


def test_a_night_sees_what_the_generator_makes_with_that_reference_time(
    plain: NightlyWorld,
) -> None:
    night = plain.night(3)
    made = generate_cohort(
        len(plain.patients), seed=31, start=FIRST - timedelta(days=10), admission_span_days=16,
        reference_time=night, id_prefix="night",
    )  # fmt: skip
    seen = plain.view(night)
    expected = [p for p in made if p.stay.admitted < night]
    assert seen == expected
    assert any(not p.stay.finished for p in seen)
    assert any(p.stay.finished for p in seen)


def test_each_drift_changes_only_what_it_names_from_its_start(plain: NightlyWorld) -> None:
    start = night_start(plain, 3)
    drifted = nightly_world(nights=6, first_night=FIRST, admissions_per_day=3, seed=31, drifts=[
        UnitSwitch(start), LabStops(start, "creatinine"), ScannerFault(start, "DX"),
    ])  # fmt: skip
    switched = stopped = faulty = 0
    for before, after in zip(plain.patients, drifted.patients, strict=True):
        assert before.stay == after.stay
        assert [o for o in before.observations if o.effective < start] == [
            o for o in after.observations if o.effective < start
        ]
        for o in after.observations:
            names = {m.variable for m in o.measurements}
            if o.effective >= start:
                assert "creatinine" not in names
                if names == {"temperature"} and o.measurements[0].value is not None:
                    m = o.measurements[0]
                    assert (m.system, m.loinc, m.unit, m.canonical_value) == (
                        LOCAL_SYSTEM, "TEMP-F", "[degF]", None,
                    )  # fmt: skip
                    assert 90.0 < m.value < 110.0
                    switched += 1
        stopped += sum("creatinine" in {m.variable for m in o.measurements}
                       for o in before.observations if o.effective >= start)  # fmt: skip
        for study in after.studies:
            broken = study.modality == "DX" and study.started >= start
            assert all(i.faulty == broken for i in study.images)
            faulty += broken
        assert not any(v.variable == "temperature" and v.effective >= start
                       for v in after.truth.values)  # fmt: skip
    assert switched > 0
    assert stopped > 0
    assert faulty > 0


def test_a_faulty_film_shows_no_chest(plain: NightlyWorld) -> None:
    patient = next(p for p in plain.patients if p.studies)
    study = patient.studies[0]
    normal = next(render_study(patient, study, size=(64, 64))).pixel_array
    broken = replace(study, images=tuple(replace(i, faulty=True) for i in study.images))
    flat = next(render_study(patient, broken, size=(64, 64))).pixel_array
    assert flat.std() < normal.std() / 5


def test_a_subgroups_outcomes_change_and_nothing_else() -> None:
    drift = SubgroupOutcome(FIRST - timedelta(days=30), gender="female")
    base = nightly_world(nights=20, first_night=FIRST, admissions_per_day=5, seed=7)
    wrong = nightly_world(nights=20, first_night=FIRST, admissions_per_day=5, seed=7,
                          drifts=[drift])  # fmt: skip
    changed = 0
    for a, b in zip(base.patients, wrong.patients, strict=True):
        assert a.observations == b.observations
        assert a.studies == b.studies
        assert a.stay.los_days == b.stay.los_days
        if a.demographics.gender == "male":
            assert a.stay.died == b.stay.died
        changed += a.stay.died != b.stay.died
    assert changed > 0


def test_a_night_writes_the_open_stays_data_and_the_closed_stays_outcomes(
    plain: NightlyWorld, tmp_path: Path
) -> None:
    night = plain.night(4)
    write_night(plain, night, tmp_path, films=None)
    encounters = [json.loads(line) for line in (tmp_path / "Encounter.ndjson").open()]
    finished = {e["subject"]["reference"] for e in encounters if e["status"] == "finished"}
    assert finished
    observed = {json.loads(line)["subject"]["reference"]
                for line in (tmp_path / "Observation.ndjson").open()}  # fmt: skip
    assert observed
    assert not observed & finished
