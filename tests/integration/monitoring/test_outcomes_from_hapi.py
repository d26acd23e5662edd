"""Outcome labels gathered from a real FHIR server (HAPI) equal the synthetic truth for every
closed stay; stays still open are counted as pending, not guessed.

The world is loaded as the server holds it on the night of the scores, and again two nights
later (the same resources PUT again: stays ended, deaths recorded), as a hospital's server
changes; the scores live in PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dipro_fhir.core.settings import Settings, StoreSettings
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.source import HttpFhirSource
from dipro_fhir.monitoring.outcomes import gather_outcomes
from dipro_fhir.store.outcomes import labelled_scores
from dipro_fhir.store.results import ResultStore
from dipro_fhir.synth import fhir as synth_fhir
from dipro_fhir.synth.stream import nightly_world
from dipro_fhir.synth.world import SyntheticPatient
from tests.unit.monitoring.worlds import expected_progression, record_night

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIRST = datetime(2026, 5, 4, 2, tzinfo=UTC)


def _load(client: FhirClient, patients: list[SyntheticPatient]) -> None:
    resources = (r for p in patients for r in synth_fhir.to_resources(p))
    for bundle in synth_fhir.transaction_bundles(resources, batch_size=200):
        client.transaction(bundle, idempotent=True)


def test_outcomes_from_hapi_equal_the_truth_and_open_stays_are_pending(
    hapi_base_url: str, migrated_pg_url: str
) -> None:
    world = nightly_world(nights=4, first_night=FIRST, admissions_per_day=3.0, seed=21,
                          id_prefix="mon")  # fmt: skip
    store = ResultStore(sa.create_engine(migrated_pg_url))
    scored = [p for p in world.view(FIRST) if not p.stay.finished]
    later = world.night(2)
    with FhirClient(hapi_base_url) as client:
        client.transaction(
            {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": synth_fhir.to_endpoint("http://x/dicom-web"),
                 "request": {"method": "PUT", "url": f"Endpoint/{synth_fhir.ENDPOINT_ID}"}}
            ]}, idempotent=True,
        )  # fmt: skip
        _load(client, world.view(FIRST))
        record_night(store, scored, FIRST)
        _load(client, world.view(later))  # two nights on: some stays ended
        settings = Settings(store=StoreSettings(url=SecretStr(migrated_pg_url)))
        counts = gather_outcomes(settings, later, HttpFhirSource(client))

    truth = {p.patient_id: p.truth for p in world.view(later)}
    rows: dict[str, Any] = {
        r.patient_id: r.outcome
        for r in labelled_scores(
            store.engine, model_version="1", since=FIRST - timedelta(1), until=later
        )
    }
    closed = {pid for pid in rows if truth[pid].outcome_known}
    assert len(rows) == len(scored)
    assert 0 < len(closed) < len(rows)
    assert (counts.known, counts.pending, counts.missing) == (
        len(closed),
        len(rows) - len(closed),
        0,
    )
    by_id = {p.patient_id: p for p in scored}
    for pid, outcome in rows.items():
        if pid in closed:
            assert outcome.status == "known"
            assert outcome.died == bool(truth[pid].mortality)
            assert outcome.los_days == pytest.approx(truth[pid].los_days, abs=1e-3)
            assert outcome.los_bin == (truth[pid].los_bin if truth[pid].los_bin >= 0 else None)
        else:
            assert (outcome.status, outcome.died, outcome.los_bin) == ("pending", None, None)
        assert outcome.progression == expected_progression(by_id[pid])
    assert any(o.died for o in rows.values()) or all(not truth[p].mortality for p in closed)
    store.engine.dispose()
