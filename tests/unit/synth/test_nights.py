"""The two-night scenario adds exactly one new CXR, between the nights, to every 4th patient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dipro_fhir.synth import generate_cohort
from dipro_fhir.synth.nights import plan_two_nights

NIGHT_TWO = datetime(2026, 11, 24, 2, tzinfo=UTC)
NIGHT_ONE = NIGHT_TWO - timedelta(days=1)


def _cohort(n: int) -> list:  # type: ignore[type-arg]
    return list(
        generate_cohort(
            n,
            seed=7,
            start=NIGHT_ONE - timedelta(days=3),
            admission_span_days=2.0,
            reference_time=NIGHT_TWO,
            id_prefix="nt",
        )
    )


def test_a_quarter_get_one_new_cxr_between_the_nights_with_new_uids() -> None:
    cohort = _cohort(12)
    plan = plan_two_nights(cohort, NIGHT_ONE, share=0.25)
    assert all(s.started < NIGHT_ONE for p in plan.night_one for s in p.studies)
    assert [p.index for p, _ in plan.new_studies] == [0, 4, 8]
    old_uids = {i.instance_uid for p in cohort for s in p.studies for i in s.images}
    for patient, study in plan.new_studies:
        assert NIGHT_ONE < study.started < NIGHT_TWO
        assert study.frontal.instance_uid not in old_uids
        assert study.study_uid not in {s.study_uid for s in patient.studies}
    assert len(plan.new_frontal_instances) == 3


def test_an_unchanged_cohort_gets_nothing_new() -> None:
    plan = plan_two_nights(_cohort(8), NIGHT_ONE, share=0.0)
    assert plan.new_studies == ()
    assert len(plan.night_one) == 8
