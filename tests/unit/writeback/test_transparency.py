"""AI Transparency on FHIR (1.0.0-ballot) resources, the HTI-1 mapping, ras-1 and ras-2."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.core.scores import ModelInfo
from dipro_fhir.core.timeline import ResourceRef
from dipro_fhir.fhir.resources import validate_resource
from dipro_fhir.writeback import codes, transparency
from dipro_fhir.writeback.assessment import (
    AssessmentOptions,
    check_risk_assessment,
    to_provenance,
    to_risk_assessment,
)
from dipro_fhir.writeback.hti1 import ATTRIBUTES, protected_inputs, source_attributes

from .scores import AS_OF, patient_scores


@pytest.fixture(scope="module")
def card_model(tmp_path_factory: pytest.TempPathFactory) -> ModelInfo:
    """A ModelInfo carrying a real checkpoint card (tiny untrained network)."""
    from dipro.checkpoint import read_card
    from tests.checkpoints import write_tiny_checkpoint

    folder: Path = write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), version="7")
    card = read_card(folder)
    return ModelInfo(card.name, card.version, card.weights_sha256, card.to_json())


def _decoded(doc: dict, index: int) -> bytes:
    return base64.b64decode(doc["content"][index]["attachment"]["data"])


def test_device_has_ai_type_version_digest_and_card_extension(card_model: ModelInfo) -> None:
    device = transparency.to_device(card_model)
    validate_resource(device)
    assert device["type"]["coding"] == [transparency.AI_DEVICE_TYPE]
    assert transparency.AI_DEVICE_TYPE["code"] == "Artificial-Intelligence"
    assert device["version"] == [{"value": "7"}]
    digests = [
        i["value"] for i in device["identifier"] if i["system"] == transparency.WEIGHTS_SYSTEM
    ]
    assert digests == [card_model.card_hash]
    assert len(card_model.card_hash) == 64
    card_ext = [e for e in device["extension"] if e["url"] == transparency.MODEL_CARD_EXTENSION]
    card_ref = card_ext[0]["valueReference"]["reference"]
    assert card_ref == f"DocumentReference/{transparency.model_card_id(card_model)}"
    assert device["meta"]["profile"] == [transparency.DEVICE_PROFILE]


def test_model_card_document_carries_markdown_json_and_hti1(card_model: ModelInfo) -> None:
    doc = transparency.to_model_card(card_model)
    validate_resource(doc)
    types = [c["attachment"]["contentType"] for c in doc["content"]]
    assert types == ["text/markdown", "application/json", "application/json"]
    assert _decoded(doc, 0).decode().startswith(f"# Model card: {card_model.name} 7")
    assert json.loads(_decoded(doc, 1))["weights_sha256"] == card_model.card_hash
    hti1 = json.loads(_decoded(doc, 2))
    assert len(hti1["attributes"]) == len(ATTRIBUTES)
    by_name = {a["attribute"]: a for a in hti1["attributes"]}
    inputs = by_name["use of (A)(5)-(13) variables as input features"]
    assert inputs["source"] == "model-card"
    assert {"race", "sex", "language"} <= set(inputs["value"]["characteristics"])
    assert by_name["party that conducted the external testing"]["source"] == "site"
    assert doc["type"]["coding"][0]["code"] == "AIModelCard"
    assert transparency.to_model_card(card_model) == doc  # deterministic: re-runs write nothing


def test_hti1_mapping_never_invents_values() -> None:
    mapped = source_attributes({"name": "m", "version": "1"})
    answered = [a for a in mapped["attributes"] if a["source"] == "model-card"]
    assert [a["attribute"] for a in answered] == [
        "model version and weights digest (not an HTI-1 item; for traceability)"
    ]
    assert protected_inputs(["age", "weight", "race_WHITE"]) == ["date of birth (as age)", "race"]


def test_provenance_has_aiast_reason_ai_role_agent_and_card_entity() -> None:
    device = f"Device/{codes.device_id('dipro', '1.0.0')}"
    prov = to_provenance(
        "run-1", ["RiskAssessment/a"], device, [ResourceRef("Observation", "o")], AS_OF
    )
    validate_resource(prov)
    assert prov["reason"] == [{"coding": [transparency.AI_REASON]}]
    assert transparency.AI_REASON["code"] == "AIAST"
    ai = [a for a in prov["agent"] if a.get("role") == [{"coding": [transparency.AI_DEVICE_TYPE]}]]
    assert [a["who"]["reference"] for a in ai] == [device]
    card = [e for e in prov["entity"] if e["role"] == "derivation"]
    assert card[0]["what"]["reference"].startswith("DocumentReference/card-")


@pytest.mark.parametrize("scale", ["percent", "fraction"])
def test_ras1_and_ras2_hold_on_both_scales(scale: str) -> None:
    options = AssessmentOptions(probability_scale=scale)  # type: ignore[arg-type]
    ra = to_risk_assessment([s for s in patient_scores("p1") if s.task == "los"], options)
    check_risk_assessment(ra, scale)
    ranged = json.loads(json.dumps(ra))
    ranged["prediction"][0]["probabilityRange"] = {
        "low": {"value": 10, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "high": {"value": 20, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    }
    del ranged["prediction"][0]["probabilityDecimal"]
    check_risk_assessment(ranged, scale)
    ranged["prediction"][0]["probabilityRange"]["high"] = {"value": 0.2}
    with pytest.raises(InvalidResource, match="ras-1"):
        check_risk_assessment(ranged, scale)
    too_big = json.loads(json.dumps(ra))
    too_big["prediction"][0]["probabilityDecimal"] = 100.5
    with pytest.raises(InvalidResource, match="ras-2"):
        check_risk_assessment(too_big, scale)
