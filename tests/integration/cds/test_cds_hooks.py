"""The CDS Hooks service as an EHR calls it (issue 24, item 3): real HTTP to uvicorn on
loopback, PostgreSQL written through the real ResultStore."""

from __future__ import annotations

import pytest
import requests

from dipro_fhir.cds.service import SERVICE_ID
from dipro_fhir.core.scores import ModelInfo
from dipro_fhir.store.retractions import RetractionRequest, RetractionStore

from .conftest import SMART_LAUNCH, UI_BASE, Record, hook_call

pytestmark = pytest.mark.integration


def _cards(base: str, call: dict[str, object]) -> list[dict[str, object]]:
    response = requests.post(f"{base}/cds-services/{SERVICE_ID}", json=call, timeout=30)
    assert response.status_code == 200, response.text
    cards: list[dict[str, object]] = response.json()["cards"]
    return cards


def test_discovery_lists_the_patient_view_service_with_its_patient_prefetch(cds_url: str) -> None:
    response = requests.get(f"{cds_url}/cds-services", timeout=30)
    assert response.status_code == 200
    (service,) = response.json()["services"]
    assert service["hook"] == "patient-view"
    assert service["id"] == SERVICE_ID
    assert service["prefetch"] == {"patient": "Patient/{{context.patientId}}"}
    assert service["title"]
    assert service["description"]


def test_a_recently_scored_patient_gets_one_card_per_task(cds_url: str, record: Record) -> None:
    record("pat-1", hours_ago=7.2)
    patient = {"resourceType": "Patient", "id": "pat-1", "birthDate": "1950-01-01"}
    cards = _cards(cds_url, hook_call("pat-1", prefetch=patient))
    topics = [c["source"]["topic"]["code"] for c in cards]  # type: ignore[index]
    assert topics == ["mortality", "progression", "los"]
    mortality, progression, los = cards
    summary = str(mortality["summary"])
    assert summary.startswith("NOT FOR CLINICAL USE: In-hospital mortality risk high (50 %), as of")
    assert summary.endswith(", 7 h ago")
    assert len(summary) < 140
    assert progression["summary"].startswith(  # type: ignore[union-attr]
        "NOT FOR CLINICAL USE: CXR progression: worsening likeliest for pneumonia (86 %, high)"
    )
    assert "Length of stay most likely 6 days or more (80 %)" in str(los["summary"])
    assert "| Pneumonia | 86.4 % (high) | 90.9 % (high) | 95.5 % (high) |" in str(
        progression["detail"]
    )
    detail = str(mortality["detail"])
    assert detail.startswith("**NOT FOR CLINICAL USE. Model dipro 1.0.0. Intended use (model card)")
    assert "validated on 1000 held-out patients" in detail
    assert "| Death in hospital | 50.0 % (high) |" in detail
    assert "(7 h ago): data recorded after that time are not in this score" in detail
    assert "FHIR: RiskAssessment/ra-pat-1-mortality" in detail
    assert mortality["indicator"] == "info"  # the card cautions: no alarm for a demonstration
    assert mortality["source"]["label"] == "DiPro dipro 1.0.0"  # type: ignore[index]
    assert mortality["links"] == [
        {
            "label": "DiPro patient view (read-only)",
            "url": f"{UI_BASE}/dipro/patients/pat-1",
            "type": "absolute",
        },
        {"label": "Open in the DiPro app", "url": SMART_LAUNCH, "type": "smart"},
    ]


def test_a_patient_without_a_recent_live_score_gets_no_card(
    cds_url: str, record: Record, engine: object
) -> None:
    record("stale", hours_ago=24 * 3)  # older than max_age_hours (36)
    record("shadowed", hours_ago=5, mode="shadow")  # shadow runs are never shown
    record("withdrawn", hours_ago=5)
    request = RetractionRequest(model_version="1.0.0", reason="test", patients=("withdrawn",))
    retractions = RetractionStore(engine)  # type: ignore[arg-type]
    retractions.begin(request, "dipro")
    assert retractions.mark_matching(request) == 26
    for patient in ("stale", "shadowed", "withdrawn", "never-scored"):
        assert _cards(cds_url, hook_call(patient)) == [], patient


def test_the_latest_night_is_shown_and_only_the_tasks_it_scored(
    cds_url: str, record: Record
) -> None:
    record("pat-2", hours_ago=31, path="ehr_only")
    record("pat-2", hours_ago=7, tasks=("mortality",))
    cards = _cards(cds_url, hook_call("pat-2"))
    by_task = {c["source"]["topic"]["code"]: c for c in cards}  # type: ignore[index]
    assert set(by_task) == {"mortality", "progression", "los"}
    assert str(by_task["mortality"]["summary"]).endswith(", 7 h ago")
    assert str(by_task["los"]["summary"]).endswith(", 31 h ago")  # the night before
    assert "EHR-only path" in str(by_task["los"]["detail"])
    assert "EHR-only path" not in str(by_task["mortality"]["detail"])


def test_a_score_of_another_model_version_says_its_card_is_not_at_hand(
    cds_url: str, record: Record
) -> None:
    record("pat-3", hours_ago=2, model=ModelInfo("dipro", "0.9.0", "b" * 64))
    (card, *_) = _cards(cds_url, hook_call("pat-3"))
    assert str(card["summary"]).startswith("MODEL CARD NOT AT HAND: ")
    assert "validation unknown (the model card was not at hand)" in str(card["detail"])


def test_a_score_of_an_earlier_stay_gets_no_card_in_another_encounter(
    cds_url: str, record: Record
) -> None:
    record("pat-4", hours_ago=3)  # scored for encounter pat-4-enc
    assert len(_cards(cds_url, hook_call("pat-4", encounterId="pat-4-enc"))) == 3
    assert _cards(cds_url, hook_call("pat-4", encounterId="new-stay")) == []


def test_calls_that_do_not_fit_are_refused_not_answered_with_cards(
    cds_url: str, record: Record
) -> None:
    record("pat-5", hours_ago=1)
    url = f"{cds_url}/cds-services/{SERVICE_ID}"
    other = {"resourceType": "Patient", "id": "someone-else"}
    refused = requests.post(url, json=hook_call("pat-5", prefetch=other), timeout=30)
    assert refused.status_code == 400
    assert "not the patient of context.patientId" in refused.text
    not_patient = {"resourceType": "Observation", "id": "pat-5"}
    assert (
        requests.post(url, json=hook_call("pat-5", prefetch=not_patient), timeout=30).status_code
        == 400
    )
    assert (
        requests.post(
            url, json={**hook_call("pat-5"), "hook": "order-sign"}, timeout=30
        ).status_code
        == 400
    )
    assert requests.post(url, json=hook_call("../pat-5"), timeout=30).status_code == 400
    assert requests.post(url, json={"hook": "patient-view"}, timeout=30).status_code == 422
    # a prefetch the EHR could not fill is absent or null: the context's id is enough
    assert len(_cards(cds_url, {**hook_call("pat-5"), "prefetch": {"patient": None}})) == 3
