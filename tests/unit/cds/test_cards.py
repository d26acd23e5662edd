"""CDS Hooks cards from stored scores: wording, age, bands, cautions (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dipro_fhir.cds.cards import SUMMARY_LIMIT, CardLinks, age_text, patient_cards
from dipro_fhir.core.model_use import ModelUse, model_use
from dipro_fhir.core.scores import outcomes_for
from dipro_fhir.core.timeline import PatientId, RunId
from dipro_fhir.store.latest import TaskScores
from dipro_fhir.store.results import StoredScore

NOW = datetime(2026, 11, 24, 9, 10, tzinfo=UTC)
AS_OF = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
CLINICAL = ModelUse(
    "dipro 2.0.0",
    card_at_hand=True,
    intended_use="Adult ICU decision support | for clinicians",
    validated=True,
    validation_patients=812,
    validation_source="site A, 2025",
    validation_date="2026-10-01",
)
LINKS = CardLinks("https://ui.test/dipro/patients/p1")


def _task(task: str, probability: float, level: str, model: str = "dipro") -> TaskScores:
    rows = [
        StoredScore(
            RunId("r"),
            PatientId("p1"),
            None,
            task,
            outcome,
            probability if i == 0 else 0.01,
            level if i == 0 else "low",
            "pairs",
            None,
            model,
            "2.0.0",
            AS_OF,
        )
        for i, outcome in enumerate(outcomes_for(task))
    ]
    return TaskScores(task, tuple(rows))


@pytest.mark.parametrize(
    ("minutes", "text"),
    [
        (0, "0 min"),
        (59, "59 min"),
        (60, "1 h"),
        (7 * 60 + 10, "7 h"),
        (47 * 60 + 59, "47 h"),
        (50 * 60, "2 d 2 h"),
        (-5, "0 min"),
    ],
)
def test_age_is_minutes_then_hours_then_days(minutes: int, text: str) -> None:
    assert age_text(NOW, NOW - timedelta(minutes=minutes)) == text


def test_a_high_risk_of_a_validated_clinical_model_is_a_warning_with_its_age() -> None:
    (card,) = patient_cards(
        {"mortality": _task("mortality", 0.62, "high")}, lambda n, v: CLINICAL, LINKS, NOW, UTC
    )
    assert card["summary"] == "In-hospital mortality risk high (62 %), as of 02:00 UTC, 7 h ago"
    assert card["indicator"] == "warning"
    assert card["links"] == [
        {
            "label": "DiPro patient view (read-only)",
            "url": LINKS.patient_view_url,
            "type": "absolute",
        }
    ]
    assert "Adult ICU decision support \\| for clinicians" in card["detail"]  # Markdown-escaped
    assert (
        "validated on 812 held-out patients (site A, 2025), recorded 2026-10-01" in card["detail"]
    )


def test_the_site_time_zone_and_another_day_show_in_the_summary() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    later = NOW + timedelta(days=1)
    (card,) = patient_cards(
        {"los": _task("los", 0.7, "high")}, lambda n, v: CLINICAL, LINKS, later, berlin
    )
    assert card["summary"] == (
        "Length of stay most likely 2 to under 3 days (70 %), as of 24 Nov 03:00 CET, 31 h ago"
    )
    assert card["indicator"] == "info"  # a length of stay is not an alarm
    assert "As of 2026-11-24 03:00 CET (31 h ago)" in card["detail"]


def test_a_cautioned_model_never_warns_and_a_long_summary_is_cut() -> None:
    demo = model_use(
        {"name": "x", "version": "1", "weights_sha256": "a", "intended_use": "Research use only."}
    )
    name = "dipro-" + "x" * 150
    cards = patient_cards(
        {"mortality": _task("mortality", 0.9, "high", model=name)},
        lambda n, v: demo,
        LINKS,
        NOW,
        UTC,
    )
    assert cards[0]["indicator"] == "info"
    assert cards[0]["summary"].startswith(
        "NOT FOR CLINICAL USE: In-hospital mortality risk high (90 %)"
    )
    assert len(cards[0]["summary"]) <= SUMMARY_LIMIT < 140
    assert cards[0]["detail"].startswith("**NOT FOR CLINICAL USE; NOT VALIDATED. Model x 1.")


@pytest.mark.parametrize(
    ("intended_use", "excluded"),
    [
        ("Demonstration and integration testing only. NOT FOR CLINICAL USE.", True),
        ("For research use only", True),
        ("Not intended for clinical decisions.", True),
        ("Demonstration only.", True),
        ("Before clinical use a site must validate it on its own patients.", False),
        ("Adult ICU patients; decision support for intensivists.", False),
    ],
)
def test_intended_use_texts_that_exclude_clinical_use(intended_use: str, excluded: bool) -> None:
    card = {"name": "m", "version": "1", "weights_sha256": "a", "intended_use": intended_use}
    assert model_use(card).clinical_use_excluded is excluded
