"""Hourly binning: last value wins (a volume per hour sums), order-invariant, idempotent,
nothing outside the window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dipro.vocab import VARIABLES
from dipro_fhir.core.timeline import ObservationEvent, ResourceRef
from dipro_fhir.mapping.binning import bin_hourly

START = datetime(2026, 3, 1, 6, 0, tzinfo=UTC)
HOURS = 6


def event(variable: str, value: float, minutes: int, rid: str = "a") -> ObservationEvent:
    when = START + timedelta(minutes=minutes)
    return ObservationEvent(variable, value, when, ResourceRef("Observation", rid))


events_strategy = st.lists(
    st.builds(
        event,
        variable=st.sampled_from(VARIABLES[:4]),
        value=st.floats(-100, 100, allow_nan=False),
        minutes=st.integers(-120, (HOURS + 2) * 60),
        rid=st.sampled_from(["a", "b", "c"]),
    ),
    max_size=30,
)


def same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b, strict=True))


def test_last_value_in_the_hour_wins_and_empty_cells_are_nan() -> None:
    values, mask, hours = bin_hourly(
        [event("heart_rate", 90, 70), event("heart_rate", 80, 10), event("heart_rate", 85, 65)],
        START,
        HOURS,
    )
    col = VARIABLES.index("heart_rate")
    assert values.shape == mask.shape == (HOURS, len(VARIABLES))
    assert values.dtype == np.float32
    assert hours.dtype == np.float32
    assert values[0, col] == 80
    assert values[1, col] == 90
    assert mask[:2, col].all()
    assert not mask[2:, col].any()
    assert np.isnan(values[2:, col]).all()
    assert hours.tolist() == list(range(HOURS))


def test_window_is_half_open() -> None:
    inside = event("heart_rate", 1, 0)
    at_end = event("heart_rate", 2, HOURS * 60)
    before = event("heart_rate", 3, -1)
    _, mask, _ = bin_hourly([inside, at_end, before], START, HOURS)
    assert mask.sum() == 1
    assert mask[0, VARIABLES.index("heart_rate")]


def test_ties_break_by_resource_id() -> None:
    values, _, _ = bin_hourly(
        [event("heart_rate", 2, 5, "b"), event("heart_rate", 1, 5, "a")], START, HOURS
    )
    assert values[0, VARIABLES.index("heart_rate")] == 2


def test_naive_window_start_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        bin_hourly([], START.replace(tzinfo=None), HOURS)


@given(events=events_strategy, seed=st.randoms(use_true_random=False))
def test_binning_is_order_invariant_and_ignores_duplicates(
    events: list[ObservationEvent], seed: random.Random
) -> None:
    shuffled = list(events) + list(events)
    seed.shuffle(shuffled)
    assert same(bin_hourly(events, START, HOURS), bin_hourly(shuffled, START, HOURS))


@given(events=events_strategy)
def test_binning_is_idempotent_and_keeps_nothing_outside_the_window(
    events: list[ObservationEvent],
) -> None:
    first = bin_hourly(events, START, HOURS)
    assert same(first, bin_hourly(events, START, HOURS))
    values, mask, _ = first
    assert np.array_equal(mask, ~np.isnan(values))
    inside = {
        ((e.effective - START) // timedelta(hours=1), VARIABLES.index(e.variable))
        for e in events
        if START <= e.effective < START + timedelta(hours=HOURS)
    }
    assert {(int(r), int(c)) for r, c in zip(*np.nonzero(mask), strict=True)} == inside


@given(events=events_strategy)
def test_each_cell_holds_the_value_of_the_latest_event_in_it(
    events: list[ObservationEvent],
) -> None:
    values, mask, _ = bin_hourly(events, START, HOURS)
    for row, col in zip(*np.nonzero(mask), strict=True):
        cell = [
            e
            for e in events
            if VARIABLES.index(e.variable) == col
            and START + timedelta(hours=int(row))
            <= e.effective
            < START + timedelta(hours=int(row) + 1)
        ]
        latest = max(e.effective for e in cell)
        candidates = {np.float32(e.value) for e in cell if e.effective == latest}
        assert values[row, col] in candidates


def test_a_volume_per_hour_is_the_sum_of_its_records_each_counted_once() -> None:
    urine, heart = VARIABLES.index("urine_output"), VARIABLES.index("heart_rate")
    events = [
        event("urine_output", 150.0, 5, rid="foley-1"),
        event("urine_output", 80.0, 40, rid="void-1"),  # Void and Foley in one hour: both
        event("urine_output", 80.0, 40, rid="void-1"),  # the same record read twice: once
        event("urine_output", 60.0, 70, rid="foley-2"),
        event("heart_rate", 90.0, 5, rid="hr-1"),
        event("heart_rate", 110.0, 40, rid="hr-2"),  # a state: the last value
    ]
    values, mask, _ = bin_hourly(events, START, HOURS)
    assert values[0, urine] == 230.0
    assert values[1, urine] == 60.0
    assert values[0, heart] == 110.0
    assert mask[:2, urine].all()
    assert not mask[2:, urine].any()
    reordered, _, _ = bin_hourly(list(reversed(events)), START, HOURS)
    assert same((values,), (reordered,))
