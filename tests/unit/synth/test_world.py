"""The synthetic world: determinism, plausibility, labels and streaming."""

from __future__ import annotations

import gc
import itertools
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from dipro.vocab import LOS_BINS, PROGRESSION_CLASSES
from dipro_fhir.mapping.variables import SPECS_BY_NAME
from dipro_fhir.synth import SyntheticPatient, generate_cohort
from dipro_fhir.synth.fhir import to_resources
from tests.unit.synth.conftest import START


def test_same_seed_gives_identical_resources() -> None:
    first = [list(to_resources(p)) for p in generate_cohort(4, seed=11, start=START)]
    again = [list(to_resources(p)) for p in generate_cohort(4, seed=11, start=START)]
    other = [list(to_resources(p)) for p in generate_cohort(4, seed=12, start=START)]
    assert first == again
    assert first != other


def test_patient_does_not_depend_on_cohort_size() -> None:
    small = list(generate_cohort(3, seed=5, start=START))[2]
    large = list(generate_cohort(9, seed=5, start=START))[2]
    assert small == large


def test_ids_are_deterministic_and_fhir_safe(cohort: list[SyntheticPatient]) -> None:
    ids = [r["id"] for p in cohort for r in to_resources(p)]
    assert len(ids) == len(set(ids))
    assert cohort[17].patient_id == "synth-000017"
    assert all(i.replace("-", "").isalnum() and len(i) <= 64 for i in ids)


def test_stays_last_2_to_10_days_and_about_15_percent_die(
    cohort: list[SyntheticPatient],
) -> None:
    los = [p.stay.los_days for p in cohort]
    assert min(los) >= 2.0
    assert max(los) <= 10.0
    deaths = sum(p.stay.died for p in cohort)
    assert 2 <= deaths <= 20
    assert all(p.stay.discharge_disposition == "exp" for p in cohort if p.stay.died)


def test_cxrs_are_at_least_8_hours_apart_inside_the_stay(cohort: list[SyntheticPatient]) -> None:
    for p in cohort:
        times = [s.started for s in p.studies]
        assert 2 <= len(times) <= 6
        assert times == sorted(times)
        assert all(b - a >= timedelta(hours=8) for a, b in itertools.pairwise(times))
        assert p.stay.admitted <= times[0]
        assert times[-1] < p.stay.discharged
        assert [i.acquired for i in p.truth.images] == times


def test_image_properties_vary_as_specified(cohort: list[SyntheticPatient]) -> None:
    studies = [s for p in cohort for s in p.studies]
    images = [i for s in studies for i in s.images]
    assert all(s.images[0].frontal for s in studies)
    lateral = sum(len(s.images) == 2 for s in studies) / len(studies)
    assert 0.1 < lateral < 0.3
    assert {s.modality for s in studies} == {"CR", "DX"}
    assert {i.photometric for i in images} == {"MONOCHROME1", "MONOCHROME2"}
    assert {i.bits_stored for i in images} == {12, 16}
    j2k = sum(i.compress_j2k for i in images) / len(images)
    assert 0.15 < j2k < 0.35


def test_anatomy_differs_between_patients(cohort: list[SyntheticPatient]) -> None:
    heart = np.array([p.anatomy.heart_ratio for p in cohort])
    width = np.array([p.anatomy.half_width for p in cohort])
    assert len({p.anatomy for p in cohort}) == len(cohort)
    assert heart.std() > 0.01
    assert width.std() > 0.005


def test_values_stay_inside_the_maps_physiologic_range(cohort: list[SyntheticPatient]) -> None:
    for p in cohort:
        for v in p.truth.values:
            low, high = SPECS_BY_NAME[v.variable].valid_range
            assert low <= v.value <= high, v


def test_observations_are_irregular_with_issued_after_effective(
    cohort: list[SyntheticPatient],
) -> None:
    p = cohort[0]
    hr = [v.effective for v in p.truth.values_of("heart_rate")]
    gaps_h = np.diff([t.timestamp() for t in hr]) / 3600.0
    assert gaps_h.min() > 0.5
    assert gaps_h.max() < 7.0
    assert gaps_h.std() > 0.2  # irregular
    for o in p.observations:
        assert timedelta(minutes=5) <= o.issued - o.effective <= timedelta(minutes=60)


def test_both_classes_of_every_label_occur(cohort: list[SyntheticPatient]) -> None:
    assert {p.truth.mortality for p in cohort} == {0, 1}
    assert len({p.truth.los_bin for p in cohort}) >= 3
    assert all(0 <= p.truth.los_bin < len(LOS_BINS) for p in cohort)
    classes = Counter(label for p in cohort for pair in p.truth.pairs for label in pair.labels)
    assert all(classes[c] > 10 for c in range(len(PROGRESSION_CLASSES)))


def _auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    ranks = scores.argsort().argsort() + 1
    pos = labels == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _early_severity(p: SyntheticPatient) -> float:
    """A crude severity score from the first 48 h of vitals (what a model could learn)."""
    cut = p.stay.admitted + timedelta(hours=48)
    late = p.stay.admitted + timedelta(hours=24)
    score = 0.0
    for name, sign in (("heart_rate", 1), ("respiratory_rate", 1), ("oxygen_saturation", -1)):
        vals = [v.value for v in p.truth.values_of(name) if late <= v.effective < cut]
        spec = SPECS_BY_NAME[name]
        score += sign * (np.mean(vals) - spec.normal) / max(abs(spec.normal), 1.0)
    return score


def test_mortality_and_los_are_learnable_from_the_first_48_hours() -> None:
    patients = list(generate_cohort(200, seed=3, start=START))
    severity = np.array([_early_severity(p) for p in patients])
    died = np.array([p.truth.mortality for p in patients])
    assert _auroc(severity, died) > 0.7
    los = np.array([p.truth.los_days for p in patients])
    assert np.corrcoef(severity, los)[0, 1] > 0.3


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_cohort_is_lazy() -> None:
    first = next(iter(generate_cohort(10**9, seed=1, start=START)))
    assert first.patient_id == "synth-000000"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_500_patients_stream_in_small_memory() -> None:
    gc.collect()
    before = _rss_bytes()
    held = 0
    for p in generate_cohort(500, seed=1, start=START):
        held += len(p.observations) > 0
    gc.collect()
    assert held == 500
    assert _rss_bytes() - before < 60 * 2**20  # holding 500 patients would take ~500 MB
