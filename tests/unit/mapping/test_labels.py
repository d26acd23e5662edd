"""Training labels read back from FHIR equal the synthetic world's ground truth."""

from __future__ import annotations

from datetime import UTC, datetime

from dipro.vocab import FINDINGS, PROGRESSION_IGNORE
from dipro_fhir.mapping.labels import los_bin, read_labels
from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.fhir import to_resources


def test_labels_from_fhir_equal_ground_truth() -> None:
    patients = generate_cohort(
        30,
        seed=5,
        start=datetime(2026, 9, 1, tzinfo=UTC),
        reference_time=datetime(2026, 9, 20, tzinfo=UTC),
    )
    checked_progression = checked_outcomes = 0
    for p in patients:
        by_type: dict[str, list[dict[str, object]]] = {}
        for r in to_resources(p):
            by_type.setdefault(str(r["resourceType"]), []).append(r)
        studies = sorted(by_type.get("ImagingStudy", []), key=lambda s: str(s["started"]))
        labels = read_labels(
            by_type["Patient"][0],
            by_type["Encounter"][0],
            by_type.get("DiagnosticReport", []),
            [str(s["id"]) for s in studies],
        )
        if p.truth.outcome_known:
            assert labels.mortality == float(p.truth.mortality)
            assert labels.los_bin == (p.truth.los_bin if p.truth.los_days >= 2 else -1)
            checked_outcomes += 1
        else:
            assert labels.mortality in (None, 1.0)
            assert labels.los_bin == -1
        if p.truth.pairs:
            assert labels.progression == p.truth.pairs[-1].labels
            checked_progression += sum(x != PROGRESSION_IGNORE for x in labels.progression)
        else:
            assert labels.progression == (PROGRESSION_IGNORE,) * len(FINDINGS)
    assert checked_outcomes > 10
    assert checked_progression > 10


def test_los_bins_follow_the_paper() -> None:
    assert [los_bin(d) for d in (1.9, 2.0, 2.99, 3.0, 4.5, 6.0, 30.0)] == [-1, 0, 0, 1, 2, 3, 3]


def test_a_death_dated_on_the_first_or_last_day_fhir_allows_is_read_not_raised() -> None:
    from zoneinfo import ZoneInfo

    from dipro_fhir.mapping.labels import death_period, mortality_label

    stay = {
        "id": "e1",
        "status": "finished",
        "period": {"start": "2024-03-01T08:00:00Z", "end": "2024-03-05T08:00:00Z"},
    }
    for day in ("9999-12-31", "0001-01-01"):
        patient = {"resourceType": "Patient", "id": "p1", "deceasedDateTime": day}
        for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago", "UTC"):
            assert death_period(patient, ZoneInfo(zone)) is not None
        assert mortality_label(patient, stay) == 0.0  # far outside the stay: survived it
