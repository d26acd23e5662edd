"""Two nights through the real pipeline steps with the shared feature cache.

Real Orthanc (QIDO/WADO-RS), real PostgreSQL (results database and cache), FHIR from NDJSON
files. Night two adds one CXR for a quarter of the patients: the backbone must run on exactly
those CXRs' crops and no cached instance may be retrieved again; scores must equal those of
a run without the cache; a corrupt entry is recomputed and recorded as a data problem.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from dipro.scoring import score
from dipro_fhir.core import staging
from dipro_fhir.core.manifest import RunRequest
from dipro_fhir.core.settings import (
    CacheSettings,
    DicomWebSettings,
    FhirSettings,
    ModelSettings,
    RunSettings,
    Settings,
    StoreSettings,
    WriteBackSettings,
)
from dipro_fhir.dicomweb.client import DicomWebClient
from dipro_fhir.run.extract_stage import extract_chunk
from dipro_fhir.run.finalize import finalize_run
from dipro_fhir.run.plan import plan_run
from dipro_fhir.run.score_stage import score_chunk
from dipro_fhir.run.writeback_stage import write_back_chunk
from dipro_fhir.scoring.features import region_features, stack_features
from dipro_fhir.scoring.preprocess import collate
from dipro_fhir.scoring.scorer import load_model
from dipro_fhir.store.models import DataProblemRow, FeatureCacheRow
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.fhir import to_imaging_study
from dipro_fhir.synth.images import render_study
from dipro_fhir.synth.load import write_files
from dipro_fhir.synth.nights import TwoNights, plan_two_nights
from tests.checkpoints import write_tiny_checkpoint
from tests.servers.orthanc import OrthancServer

pytestmark = pytest.mark.integration

NIGHT_TWO = datetime(2026, 11, 24, 2, tzinfo=UTC)
NIGHT_ONE = NIGHT_TWO - timedelta(days=1)
PATIENTS = 8
SIZE = (128, 128)


def _load(plan: TwoNights, orthanc: OrthancServer, folder: Path) -> None:
    write_files(plan.night_one, folder, dicomweb_base_url=orthanc.dicomweb_url, image_size=SIZE)
    client = DicomWebClient(orthanc.dicomweb_url)
    for p in plan.night_one:
        for study in p.studies:
            client.store(list(render_study(p, study, size=SIZE)))


def _add_new_cxrs(plan: TwoNights, orthanc: OrthancServer, folder: Path) -> None:
    client = DicomWebClient(orthanc.dicomweb_url)
    with (folder / "ImagingStudy.ndjson").open("a", encoding="utf-8") as out:
        for p, study in plan.new_studies:
            out.write(json.dumps(to_imaging_study(p, study)) + "\n")
            client.store(list(render_study(replace(p, studies=(study,)), study, size=SIZE)))


def _settings(folder: Path, orthanc: OrthancServer, url: str, ckpt: Path, cache: bool) -> Settings:
    return Settings(
        fhir=FhirSettings(ndjson_dir=folder),
        dicomweb=DicomWebSettings(base_url=orthanc.dicomweb_url),
        store=StoreSettings(url=SecretStr(url)),
        model=ModelSettings(checkpoint=ckpt, device="cpu"),
        writeback=WriteBackSettings(target="none"),
        run=RunSettings(availability="issued", staging_dir=str(folder / "staging")),
        cache=CacheSettings(enabled=cache),
    )


def _night(settings: Settings, as_of: datetime, ids: tuple[str, ...], label: str) -> dict[str, Any]:
    """Run one night step by step; return summed counts and the staged scores/timelines."""
    request = RunRequest(as_of=as_of, dag_run_id=label, patient_ids=ids)
    done, counts = [], {}
    scores: list[dict[str, Any]] = []
    timelines = []
    for manifest in plan_run(settings, request):
        manifest = extract_chunk(settings, manifest)
        timelines += staging.load_timelines(manifest["timelines_path"])
        manifest = score_chunk(settings, manifest)
        scores += json.loads(staging.read_bytes(manifest["scores_path"]))["scores"]
        manifest = write_back_chunk(settings, manifest)
        done.append(manifest)
        for key, value in manifest["counts"].items():
            counts[key] = counts.get(key, 0) + value
    finalize_run(settings, done)
    return {"counts": counts, "scores": scores, "timelines": timelines}


def _raw_probabilities(settings: Settings, timelines: list[Any]) -> np.ndarray[Any, Any]:
    """Unrounded probabilities (fp32 on CPU) of every task, one row per patient."""
    model = load_model(settings.model.checkpoint, "cpu")
    config = model.network.config
    feats = region_features(
        model.network,
        timelines,
        max_cxrs=config.max_cxrs,
        crop_size=config.crop_size,
        weights_digest=model.backbone_digest,
    )
    batch = collate(
        timelines, model.preprocessing, max_cxrs=config.max_cxrs, crop_size=0, with_crops=False
    )
    result = score(model.network, batch, region_features=stack_features(timelines, feats, 99))
    outputs = (result.progression, result.mortality, result.los)
    parts = [t.reshape(len(timelines), -1) for t in outputs if t is not None]
    return np.concatenate([p.numpy() for p in parts], axis=1)


@pytest.fixture
def world(
    tmp_path: Path, orthanc_clean: OrthancServer, migrated_pg_url: str
) -> tuple[TwoNights, Path, Settings, Settings]:
    cohort = generate_cohort(
        PATIENTS,
        seed=5,
        start=NIGHT_ONE - timedelta(days=3),
        admission_span_days=2.0,
        reference_time=NIGHT_TWO,
        id_prefix="night",
    )
    plan = plan_two_nights(cohort, NIGHT_ONE, share=0.25)
    assert len(plan.new_studies) == PATIENTS // 4
    folder = tmp_path / "cohort"
    _load(plan, orthanc_clean, folder)
    ckpt = write_tiny_checkpoint(tmp_path / "ckpt")
    cached = _settings(folder, orthanc_clean, migrated_pg_url, ckpt, cache=True)
    return plan, folder, cached, _settings(folder, orthanc_clean, migrated_pg_url, ckpt, False)


def _new_rows(url: str, since: datetime) -> set[str]:
    table = FeatureCacheRow.__table__
    with sa.create_engine(url).connect() as conn:
        rows = conn.execute(sa.select(table.c.instance_uid).where(table.c.created_at >= since))
        return {r[0] for r in rows}


def test_second_night_computes_exactly_the_new_cxrs_and_scores_like_no_cache(
    world: tuple[TwoNights, Path, Settings, Settings], orthanc_clean: OrthancServer
) -> None:
    plan, folder, cached, uncached = world
    ids = tuple(p.patient_id for p in plan.night_one)
    url = cached.store.url.get_secret_value()
    one = _night(cached, NIGHT_ONE, ids, "night-1")
    cxrs_one = sum(len(t.images) for t in one["timelines"])
    assert cxrs_one > 0
    assert one["counts"]["backbone_crops"] == 10 * cxrs_one
    assert one["counts"]["cxrs_from_cache"] == 0

    # An unchanged cohort: nothing is computed and no pixels are fetched again.
    again = _night(cached, NIGHT_ONE, ids, "night-1-again")
    assert again["counts"]["backbone_crops"] == 0
    assert again["counts"]["wado_instance_bytes"] == 0 < one["counts"]["wado_instance_bytes"]
    assert again["scores"] == one["scores"]

    _add_new_cxrs(plan, orthanc_clean, folder)
    before = datetime.now(UTC)
    two = _night(cached, NIGHT_TWO, ids, "night-2")
    used = {img.instance_uid for t in two["timelines"] for img in t.images}
    assert plan.new_frontal_instances <= used
    assert two["counts"]["backbone_crops"] == 10 * len(plan.new_frontal_instances)
    assert _new_rows(url, before) == set(plan.new_frontal_instances)

    # Without the cache: same scores, and the same probabilities before rounding.
    plain = _night(uncached, NIGHT_TWO, ids, "night-2-plain")
    assert plain["counts"]["backbone_crops"] == 10 * sum(len(t.images) for t in plain["timelines"])
    assert plain["scores"] == two["scores"]
    with_cache = _raw_probabilities(cached, two["timelines"])
    without = _raw_probabilities(uncached, plain["timelines"])
    assert np.abs(with_cache - without).max() <= 1e-6


def test_corrupt_entry_is_recomputed_and_recorded(
    world: tuple[TwoNights, Path, Settings, Settings],
) -> None:
    plan, _folder, cached, _ = world
    ids = tuple(p.patient_id for p in plan.night_one)
    url = cached.store.url.get_secret_value()
    one = _night(cached, NIGHT_ONE, ids, "night-1")
    victim = one["timelines"][0].images[-1].instance_uid
    table = FeatureCacheRow.__table__
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        where = table.c.instance_uid == victim
        blob = bytearray(conn.execute(sa.select(table.c.payload).where(where)).scalar_one())
        blob[-10] ^= 0x55
        conn.execute(table.update().where(where).values(payload=bytes(blob)))
    again = _night(cached, NIGHT_ONE, ids, "night-1-corrupt")
    assert again["counts"]["feature_cache_corrupt"] == 1
    assert again["counts"]["backbone_crops"] == 10
    assert again["scores"] == one["scores"]
    problems = DataProblemRow.__table__
    with engine.connect() as conn:
        recorded = conn.execute(
            sa.select(problems.c.resource).where(problems.c.code == "feature-cache-corrupt")
        ).all()
    assert [r[0] for r in recorded] == [f"instance/{victim}"]
    # The recomputed entry is whole again: a third run reads it from the cache.
    third = _night(cached, NIGHT_ONE, ids, "night-1-third")
    assert third["counts"]["backbone_crops"] == 0
    assert third["counts"]["feature_cache_corrupt"] == 0
