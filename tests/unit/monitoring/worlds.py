"""Helpers of the monitor's tests: score rows for a night of a synthetic world, as a nightly
run records them, and a FHIR source over a night's NDJSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from dipro_fhir.core.scores import Score
from dipro_fhir.core.timeline import EncounterId, PatientId, RunId
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.store.results import ResultStore
from dipro_fhir.synth.stream import NightlyWorld, nightly_world, write_night
from dipro_fhir.synth.world import SyntheticPatient

#: The first night of the monitoring tests' worlds.
FIRST_NIGHT = datetime(2026, 7, 1, 2, tzinfo=UTC)


def sqlite_store(folder: Path) -> ResultStore:
    """A migrated SQLite results database in ``folder``."""
    url = f"sqlite:///{(folder / 'results.sqlite').resolve()}"
    upgrade_database(url)
    return ResultStore(sa.create_engine(url))


def record_night(
    store: ResultStore,
    patients: Sequence[SyntheticPatient],
    as_of: datetime,
    *,
    probability: float = 0.3,
    version: str = "1",
    kind: str = "nightly",
) -> RunId:
    """A run of ``as_of`` that scored every open stay of ``patients`` (mortality only)."""
    run_id = RunId(f"run-{version}-{kind}-{as_of:%Y%m%d%H}")
    store.start_run(run_id, as_of=as_of, model_name="m", model_version=version, kind=kind)
    scores = [
        Score(PatientId(p.patient_id), EncounterId(p.stay.encounter_id), "mortality", "death",
              probability, "m", version, as_of, run_id)
        for p in patients
        if not p.stay.finished
    ]  # fmt: skip
    store.record_chunk(run_id, scores)
    store.finish_run(run_id, status="success", counts={}, timings_s={})
    return run_id


def ndjson_source(folder: Path) -> NdjsonFhirSource:
    """The FHIR source of a night's files."""
    return NdjsonFhirSource(folder)


def expected_progression(scored: SyntheticPatient) -> tuple[int, ...] | None:
    """The coded change of the last CXR pair a score saw (``None``: no pair, or no finding)."""
    pairs = scored.truth.pairs
    if not pairs or all(v == 3 for v in pairs[-1].labels):
        return None
    return pairs[-1].labels


def uninformative_nights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[NightlyWorld, datetime, ResultStore]:
    """Six recorded nights whose scores say nothing (the same risk for everyone), the
    seventh night's files, and the monitor's settings in the environment with a minimum
    AUROC of 0.9, so that monitoring the seventh night breaches it. Returns the world, the
    seventh night and the store."""
    world = nightly_world(nights=8, first_night=FIRST_NIGHT, admissions_per_day=4, seed=8)
    store = sqlite_store(tmp_path)
    for k in range(6):
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
    return world, night, store
