"""AI Transparency on FHIR against HAPI: a night's Device, model card, RiskAssessments and
Provenances are accepted and validate (``$validate`` and fhir.resources)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from dipro_fhir.core.scores import ModelInfo
from dipro_fhir.core.timeline import RunId
from dipro_fhir.fhir.client import FhirClient
from dipro_fhir.fhir.resources import validate_resource
from dipro_fhir.store import ResultStore
from dipro_fhir.writeback import transparency
from dipro_fhir.writeback.assessment import (
    AssessmentOptions,
    check_risk_assessment,
    to_risk_assessment,
)
from dipro_fhir.writeback.sinks import FhirResultSink
from dipro_fhir.writeback.write import publish_chunk
from tests.integration.writeback.sources import load_sources
from tests.integration.writeback.validate import server_errors
from tests.unit.writeback.scores import AS_OF, cohort_scores

pytestmark = pytest.mark.integration
N_PATIENTS = 3


@pytest.fixture(scope="module")
def card_model(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    from dipro.checkpoint import read_card
    from tests.checkpoints import write_tiny_checkpoint

    folder: Path = write_tiny_checkpoint(
        tmp_path_factory.mktemp("ckpt"), name="dipro", version="1.0.0"
    )
    card = read_card(folder)
    return ModelInfo(card.name, card.version, card.weights_sha256, card.to_json())


@pytest.fixture
def store(migrated_pg_url: str) -> Iterator[ResultStore]:
    engine = sa.create_engine(migrated_pg_url)
    result = ResultStore(engine)
    result.start_run(RunId("run-1"), as_of=AS_OF, model_name="dipro", model_version="1.0.0")
    yield result
    engine.dispose()


def test_a_night_writes_ai_transparency_resources_that_validate(
    fhir_base_url: str, store: ResultStore, card_model: ModelInfo
) -> None:
    scores = cohort_scores(N_PATIENTS)
    with FhirClient(fhir_base_url) as client:
        load_sources(client, scores)
        report, _ = publish_chunk(
            FhirResultSink(client),
            store,
            RunId("run-1"),
            scores,
            card_model,
            options=AssessmentOptions(transaction_size=2),
        )
        assert report.failures == ()
        assert report.written == 3 * N_PATIENTS
        written = {
            rtype: list(client.search(rtype, {"_count": "500"}))
            for rtype in ("Device", "DocumentReference", "RiskAssessment", "Provenance")
        }
    assert [len(written[t]) for t in written] == [1, 1, 3 * N_PATIENTS, 5]
    device, card = written["Device"][0], written["DocumentReference"][0]
    assert device["type"]["coding"][0]["code"] == "Artificial-Intelligence"
    card_ref = [e for e in device["extension"] if e["url"] == transparency.MODEL_CARD_EXTENSION]
    assert card_ref[0]["valueReference"]["reference"] == f"DocumentReference/{card['id']}"
    for provenance in written["Provenance"]:
        assert provenance["reason"][0]["coding"][0]["code"] == "AIAST"
        ai = [a for a in provenance["agent"] if a.get("role")]
        assert ai[0]["role"][0]["coding"][0]["code"] == "Artificial-Intelligence"
        assert ai[0]["who"]["reference"] == f"Device/{device['id']}"
    errors: dict[str, list[str]] = {}
    for rtype, resources in written.items():
        for resource in resources:
            validate_resource(resource)
            found = server_errors(fhir_base_url, resource)
            if found:
                errors[f"{rtype}/{resource['id']}"] = found
    assert errors == {}
    print("HAPI $validate, 0 errors: " + ", ".join(f"{len(v)} {k}" for k, v in written.items()))


def test_a_risk_assessments_narrative_and_cautions_survive_hapi_unchanged(
    fhir_base_url: str, store: ResultStore, card_model: ModelInfo
) -> None:
    """Issue 24, item 2: the narrative HAPI hands back is the one written (so a re-run
    still finds identical content), HAPI's ``$validate`` accepts it (txt-1, txt-2), and
    the demo card's "not for clinical use" is on the RiskAssessment and its Device."""
    scores = [s for s in cohort_scores(1) if s.task == "mortality"]
    built = to_risk_assessment(scores, model=card_model)
    with FhirClient(fhir_base_url) as client:
        load_sources(client, scores)
        sink = FhirResultSink(client)
        report, _ = publish_chunk(sink, store, RunId("run-1"), scores, card_model)
        assert (report.written, report.failures) == (1, ())
        stored = client.read("RiskAssessment", built["id"])
        device = client.read("Device", built["performer"]["reference"].split("/")[1])
        again, _ = publish_chunk(sink, store, RunId("run-1"), scores, card_model)
    assert stored["text"] == built["text"]
    assert stored["text"]["status"] == "generated"
    assert stored["note"][0]["text"].startswith("NOT FOR CLINICAL USE. Model dipro 1.0.0.")
    assert "<b>NOT FOR CLINICAL USE.</b>" in stored["text"]["div"]
    assert device["safety"][0]["coding"][0]["code"] == "not-for-clinical-use"
    assert (again.written, again.unchanged) == (0, 1)
    assert server_errors(fhir_base_url, stored) == []
    check_risk_assessment(stored)
    print(f"narrative as HAPI returns it: {stored['text']['div']}")
