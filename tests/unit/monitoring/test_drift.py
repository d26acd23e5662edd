"""Drift items: a change is flagged only when it reaches the threshold and its test agrees,
so a small night's noise flags nothing and a real shift names its variable."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from dipro.vocab import VARIABLES
from dipro_fhir.core.settings import MonitorSettings
from dipro_fhir.core.timeline import MappingIssue, PatientId, PatientTimeline
from dipro_fhir.mapping.profile import BINS, InputProfile, profile_timeline
from dipro_fhir.monitoring.drift import (
    Inputs,
    compare_inputs,
    histogram_test,
    merge_bins,
    score_histogram,
)

LIMITS = MonitorSettings()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
V = len(VARIABLES)


def _profile(
    rng: np.random.Generator, n: int, *, shift: float = 0.0, lab_share: float = 0.9
) -> InputProfile:
    total = InputProfile()
    for _ in range(n):
        values = np.full((4, V), np.nan, dtype=np.float32)
        values[:, :] = rng.normal(shift, 1.0, (4, V))
        mask = np.ones((4, V), dtype=bool)
        mask[:, VARIABLES.index("creatinine")] = rng.random() < lab_share
        timeline = PatientTimeline(
            PatientId("p"), None, T0, T0,
            values, mask, np.arange(4, dtype=np.float32), np.zeros(17, np.float32),
        )  # fmt: skip
        total = total.merged(profile_timeline(timeline, [0.0] * V, [1.0] * V))
    return total


def _inputs(profile: InputProfile, risks: list[float]) -> Inputs:
    return Inputs(profile, score_histogram(risks), {"local|A": 10}, 1000)


def test_a_night_like_the_reference_flags_nothing() -> None:
    rng = np.random.default_rng(0)
    reference = _inputs(_profile(rng, 150), list(rng.beta(2, 8, 150)))
    for seed in range(5):
        night_rng = np.random.default_rng(100 + seed)
        tonight = _inputs(_profile(night_rng, 15), list(night_rng.beta(2, 8, 15)))
        flagged = [i for i in compare_inputs(tonight, reference, LIMITS) if i.flagged]
        assert flagged == []


def test_a_lab_that_stops_and_a_shifted_variable_are_named() -> None:
    rng = np.random.default_rng(1)
    reference = _inputs(_profile(rng, 150), list(rng.beta(2, 8, 150)))
    tonight = _inputs(_profile(rng, 20, lab_share=0.0), list(rng.beta(2, 8, 20)))
    items = compare_inputs(tonight, reference, LIMITS)
    assert {(i.kind, i.item) for i in items if i.flagged} == {("coverage", "creatinine")}

    shifted = _inputs(_profile(rng, 20, shift=3.0), list(rng.beta(2, 8, 20)))
    flagged = {(i.kind, i.item) for i in compare_inputs(shifted, reference, LIMITS) if i.flagged}
    assert ("distribution", "temperature") in flagged
    assert all(kind == "distribution" for kind, _ in flagged)


def test_a_new_unmapped_code_is_flagged_by_its_count() -> None:
    rng = np.random.default_rng(2)
    profile = _profile(rng, 20)
    reference = Inputs(profile, score_histogram([0.1] * 20), {"local|A": 10}, 1000)
    tonight = Inputs(profile, score_histogram([0.1] * 20), {"local|A": 10, "local|NEW": 80,
                                                            "local|RARE": 3}, 1000)  # fmt: skip
    items = {i.item: i for i in compare_inputs(tonight, reference, LIMITS)
             if i.kind == "new-unmapped-code"}  # fmt: skip
    assert set(items) == {"local|NEW", "local|RARE"}
    assert items["local|NEW"].flagged
    assert not items["local|RARE"].flagged


def test_bins_merge_to_five_percent_and_psi_grows_with_the_shift() -> None:
    reference = [0, 0, 1, 4, 20, 50, 20, 4, 1, 0]
    groups = merge_bins(reference)
    assert sorted(i for g in groups for i in g) == list(range(10))
    assert all(sum(reference[i] for i in g) >= 5 for g in groups)
    same, _ = histogram_test(reference, reference)
    moved, p = histogram_test([0, 0, 0, 0, 1, 4, 20, 50, 20, 5], reference)
    assert same < 1e-9
    assert moved > LIMITS.max_psi
    assert p < 1e-6


def test_a_patients_median_lands_in_its_z_bin_and_films_after_as_of_do_not_count() -> None:
    values = np.full((3, V), np.nan, dtype=np.float32)
    mask = np.zeros((3, V), dtype=bool)
    j = VARIABLES.index("heart_rate")
    values[:, j], mask[:, j] = (80.0, 100.0, 120.0), True
    issues = (MappingIssue("regions-not-found"), MappingIssue("after-as-of"))
    timeline = PatientTimeline(
        PatientId("p"), None, T0, T0,
        values, mask, np.arange(3, dtype=np.float32), np.zeros(17, np.float32), issues=issues,
    )  # fmt: skip
    mean, std = [0.0] * V, [1.0] * V
    mean[j], std[j] = 90.0, 10.0
    profile = profile_timeline(timeline, mean, std)
    assert profile.variable_patients == {"heart_rate": 1}
    histogram = profile.histogram("heart_rate")
    assert len(histogram) == BINS
    assert histogram.index(1) == 11  # z = +1.0: the bin [1.0, 1.5) (bin 0 is below -4)
    assert dict(profile.films_unusable) == {"regions-not-found": 1}
    assert InputProfile.from_json(profile.to_json()) == profile
