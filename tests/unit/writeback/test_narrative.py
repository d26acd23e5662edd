"""RiskAssessments a person can read (issue 24, item 2): the generated narrative and the
model card's cautions (not for clinical use, not validated) on the RiskAssessment and the
Device."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from dipro_fhir.core.errors import InvalidResource
from dipro_fhir.core.model_use import NOT_FOR_CLINICAL_USE, NOT_VALIDATED, model_use
from dipro_fhir.core.scores import ModelInfo, Score
from dipro_fhir.fhir.resources import round_trip
from dipro_fhir.training.demo_checkpoint import DEMO_VERSION, PACKAGED
from dipro_fhir.writeback.assessment import (
    AssessmentOptions,
    check_risk_assessment,
    to_risk_assessment,
)
from dipro_fhir.writeback.narrative import XHTML_NS, narrative
from dipro_fhir.writeback.retract import retracted_version
from dipro_fhir.writeback.transparency import MODEL_USE_SYSTEM, to_device

from .scores import patient_scores

#: The elements a FHIR narrative may use (R4 Narrative, txt-1) that ours does use.
ALLOWED = {"div", "p", "b", "table", "tr", "th", "td", "ul", "li"}


def _card(**changes: Any) -> dict[str, Any]:
    card: dict[str, Any] = json.loads((PACKAGED / "model_card.json").read_text())
    card.update(changes)
    return card


def _model(card: dict[str, Any]) -> ModelInfo:
    return ModelInfo(card["name"], card["version"], card["weights_sha256"], json.dumps(card))


DEMO = _model(_card())


def _scores(task: str, model: ModelInfo = DEMO, **kwargs: Any) -> list[Score]:
    return [s for s in patient_scores("pat-7", model=model, **kwargs) if s.task == task]


def _text(div: str) -> str:
    return re.sub(r"<[^>]+>", "", div)


def test_the_demo_models_assessment_says_not_for_clinical_use_first() -> None:
    ra = to_risk_assessment(_scores("mortality"), model=DEMO)
    check_risk_assessment(ra)
    assert ra["text"]["status"] == "generated"
    assert ra["note"][0]["text"].startswith(
        f"{NOT_FOR_CLINICAL_USE}. Model dipro-demo {DEMO_VERSION}."
    )
    div = ra["text"]["div"]
    assert div.startswith(f'<div xmlns="{XHTML_NS}"><p><b>{NOT_FOR_CLINICAL_USE}.</b>')
    text = _text(div)
    assert "validated on 1000 held-out patients (synthetic held-out cohort, seed 4242)" in text
    assert (
        f"In-hospital mortality: risk assessment by dipro-demo {DEMO_VERSION}, asserted by an AI"
        in text
    )
    assert "as of 2026-11-24 02:00 UTC" in text
    assert "Death in hospital50.0 %High likelihood" in text  # outcome, probability, band
    assert "Rests on 3 Observations and 2 imaging studies (chest radiographs)" in text


def test_an_unvalidated_card_is_marked_and_a_validated_clinical_card_is_not() -> None:
    unvalidated = _model(_card(validation={}))
    ra = to_risk_assessment(_scores("los", unvalidated), model=unvalidated)
    assert NOT_VALIDATED in ra["note"][0]["text"]
    assert "not validated (the model card holds no validation record" in ra["text"]["div"]
    other_weights = _card()
    other_weights["validation"] = {**other_weights["validation"], "checkpoint": {}}
    assert model_use(other_weights).cautions == (NOT_FOR_CLINICAL_USE, NOT_VALIDATED)
    clinical = _model(_card(intended_use="Adult ICU patients, decision support for clinicians."))
    ra = to_risk_assessment(_scores("los", clinical), model=clinical)
    assert "note" not in ra
    assert "NOT " not in ra["text"]["div"]
    assert "safety" not in to_device(clinical)
    unstated = _model(_card(intended_use=""))
    ra = to_risk_assessment(_scores("los", unstated), model=unstated)
    assert ra["note"][0]["text"].startswith("INTENDED USE NOT STATED.")


def test_the_device_carries_the_cautions_as_safety() -> None:
    (safety,) = to_device(DEMO)["safety"]
    assert safety["coding"][0] == {
        "system": MODEL_USE_SYSTEM,
        "code": "not-for-clinical-use",
        "display": "Not for clinical use",
    }
    assert "Trained and validated on synthetic patients" in safety["text"]
    no_card = to_device(ModelInfo("dipro", "1.0.0", "a" * 64))
    assert [s["coding"][0]["code"] for s in no_card["safety"]] == ["model-card-missing"]
    round_trip(no_card)


def test_the_narrative_holds_no_identifier_and_depends_on_nothing_but_the_resource() -> None:
    ra = to_risk_assessment(_scores("progression"), model=DEMO)
    div = ra["text"]["div"]
    for secret in ("pat-7", "Patient/", "Encounter/", "pat-7-obs0", "pat-7-cxr1", ra["id"]):
        assert secret not in div
    without = {k: v for k, v in ra.items() if k != "text"}
    assert narrative(without) == ra["text"]
    other_patient = {**without, "subject": {"reference": "Patient/x"}, "encounter": {}}
    assert narrative(other_patient) == ra["text"]


def test_the_narrative_is_well_formed_xhtml_of_basic_elements_only() -> None:
    scores = [
        dataclasses.replace(s, missing_regions=("left_lung",), images_not_used=1)
        for s in _scores("progression", path="ehr_only", n_observations=80)
    ]
    ra = to_risk_assessment(scores, AssessmentOptions(max_basis=10), model=DEMO)
    root = ET.fromstring(ra["text"]["div"])
    assert root.tag == f"{{{XHTML_NS}}}div"
    tags = {el.tag.removeprefix(f"{{{XHTML_NS}}}") for el in root.iter()}
    assert tags <= ALLOWED
    assert all(not el.attrib for el in root.iter())
    assert len(root.findall(f".//{{{XHTML_NS}}}tr")) == 1 + 21  # header + every outcome
    text = _text(ra["text"]["div"])
    # basis keeps both studies and 8 of the 80 Observations (max_basis 10)
    assert "Rests on 8 Observations and 2 imaging studies" in text
    assert "basis lists 10 of 82 resources used" in text
    assert "scored without CXR pairs (EHR-only path)" in text
    assert "missing on the radiographs used (model padding): left lung" in text
    assert "1 radiograph(s) not used: region placement failed quality control" in text


@pytest.mark.parametrize("scale", ["percent", "fraction"])
def test_the_narrative_shows_percent_whatever_the_wire_scale(scale: str) -> None:
    ra = to_risk_assessment(
        _scores("mortality"),
        AssessmentOptions(probability_scale=scale),  # type: ignore[arg-type]
        model=DEMO,
    )
    check_risk_assessment(ra, scale)
    assert "<td>50.0 %</td>" in ra["text"]["div"]


def test_a_retracted_assessment_says_so_before_anything_else() -> None:
    ra = to_risk_assessment(_scores("mortality"), model=DEMO)
    retracted = retracted_version(ra, "wrong calibration", "retraction-1")
    div = retracted["text"]["div"]
    assert div.startswith(
        f'<div xmlns="{XHTML_NS}"><p><b>ENTERED IN ERROR</b>: Retracted (retraction-1): '
        "wrong calibration</p><p><b>NOT FOR CLINICAL USE.</b>"
    )
    check_risk_assessment(retracted)
    old = {k: v for k, v in ra.items() if k != "text"}  # written before narratives existed
    assert "ENTERED IN ERROR" in retracted_version(old, "r", "x")["text"]["div"]


@pytest.mark.parametrize(
    ("div", "rule"),
    [
        ("<div>no namespace</div>", "XHTML namespace"),
        (f'<div xmlns="{XHTML_NS}"><script>alert(1)</script></div>', "<script>"),
        (f'<div xmlns="{XHTML_NS}"><p onclick="x()">a</p></div>', "attribute of <p>"),
        (f'<div xmlns="{XHTML_NS}"><p> </p></div>', "txt-2"),
        (f'<div xmlns="{XHTML_NS}"><p>unclosed</div>', "well-formed"),
    ],
)
def test_a_narrative_breaking_fhirs_rules_is_refused_before_any_write(div: str, rule: str) -> None:
    ra = to_risk_assessment(_scores("mortality"), model=DEMO)
    with pytest.raises(InvalidResource, match=rule):
        check_risk_assessment({**ra, "text": {"status": "generated", "div": div}})
