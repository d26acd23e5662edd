"""Helpers of the monitor's tests: score rows for a night of a synthetic world, as a nightly
run records them, and a FHIR source over a night's NDJSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from dipro_fhir.core.scores import Score
from dipro_fhir.core.timeline import EncounterId, PatientId, RunId
from dipro_fhir.fhir.ndjson_source import NdjsonFhirSource
from dipro_fhir.store.migrate import upgrade_database
from dipro_fhir.store.results import ResultStore
from dipro_fhir.synth.world import SyntheticPatient


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
