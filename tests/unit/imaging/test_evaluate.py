"""The patient bootstrap of ``dipro-fhir regions``' mean IoU."""

from __future__ import annotations

import pytest

from dipro_fhir.imaging.evaluate import patient_bootstrap


def test_films_of_one_patient_count_as_one_draw() -> None:
    values = [0.2] * 10 + [0.8] * 10
    by_patient = patient_bootstrap(values, ["a"] * 10 + ["b"] * 10)
    by_film = patient_bootstrap(values, [f"film{i}" for i in range(20)])
    assert by_patient is not None
    assert by_film is not None
    # Two patients: a resample holds a twice, b twice or one of each (mean 0.2, 0.8 or 0.5).
    assert by_patient == pytest.approx((0.2, 0.8))
    # Taking the 20 films as 20 patients would claim a far narrower interval.
    assert by_film[0] > 0.3
    assert by_film[1] < 0.7


def test_the_interval_holds_the_mean_and_is_the_same_every_run() -> None:
    values = [0.1 * (i % 7) for i in range(40)]
    patients = [f"p{i % 9}" for i in range(40)]
    low, high = patient_bootstrap(values, patients) or (1.0, 0.0)
    assert low < sum(values) / len(values) < high
    assert patient_bootstrap(values, patients) == (low, high)
    assert patient_bootstrap([0.5] * 6, ["a", "a", "b", "b", "c", "c"]) == (0.5, 0.5)


def test_one_patient_gives_no_interval_and_lengths_must_match() -> None:
    assert patient_bootstrap([0.4, 0.6], ["a", "a"]) is None
    with pytest.raises(ValueError, match="one patient per value"):
        patient_bootstrap([0.4, 0.6], ["a"])
