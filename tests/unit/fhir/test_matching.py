"""FHIR search semantics applied to raw JSON (shared by both FhirSource implementations)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dipro_fhir.fhir.matching import (
    OPEN,
    effective_range,
    is_active_encounter,
    is_under_way,
    matches_codes,
    overlaps,
    reference_id,
    time_range,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def test_reference_id_reads_relative_absolute_and_versioned_references() -> None:
    assert reference_id("Patient/p1", "Patient") == "p1"
    assert reference_id("https://x.org/fhir/Patient/p1/_history/3", "Patient") == "p1"
    assert reference_id("Group/p1", "Patient") is None
    assert reference_id(None, "Patient") is None


def test_partial_dates_stand_for_their_whole_precision() -> None:
    assert time_range("2024") == (
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2025, 1, 1, tzinfo=UTC),
    )
    assert time_range("2024-02") == (T0 - timedelta(days=29), T0)
    assert time_range("2024-03-01") == (T0, T0 + timedelta(days=1))
    start, end = time_range("2024-03-01T01:00:00+01:00") or (None, None)
    assert start == T0
    assert end == T0 + timedelta(seconds=1)
    assert time_range("not a date") is None


def test_date_window_is_half_open() -> None:
    inside = {"effectiveDateTime": "2024-03-01T00:00:00Z"}
    at_end = {"effectiveDateTime": "2024-03-02T00:00:00Z"}
    since, until = T0, T0 + timedelta(days=1)
    assert overlaps(effective_range(inside), since, until)
    assert not overlaps(effective_range(at_end), since, until)
    assert not overlaps(effective_range({}), since, until)


def test_effective_period_matches_when_it_overlaps_the_window() -> None:
    obs = {"effectivePeriod": {"start": "2024-02-29T20:00:00Z", "end": "2024-03-01T02:00:00Z"}}
    assert overlaps(effective_range(obs), T0, T0 + timedelta(hours=1))
    assert not overlaps(effective_range(obs), T0 + timedelta(hours=3), T0 + timedelta(hours=4))


@given(st.integers(min_value=-200, max_value=200), st.integers(min_value=1, max_value=100))
def test_a_point_matches_exactly_when_since_le_t_lt_until(offset_h: int, width_h: int) -> None:
    moment = T0 + timedelta(hours=offset_h)
    obs = {"effectiveDateTime": moment.isoformat()}
    until = T0 + timedelta(hours=width_h)
    assert overlaps(effective_range(obs), T0, until) == (T0 <= moment < until)


def test_code_tokens_match_with_or_without_system() -> None:
    obs = {"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}
    assert matches_codes(obs, None)
    assert matches_codes(obs, ["8867-4"])
    assert matches_codes(obs, ["http://loinc.org|8867-4", "x"])
    assert not matches_codes(obs, ["http://snomed.info/sct|8867-4"])
    assert not matches_codes(obs, [])


def _encounter(status: str, code: str, start: str | None, end: str | None) -> dict[str, object]:
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    return {"status": status, "class": {"code": code}, "period": period}


@pytest.mark.parametrize(
    ("encounter", "active"),
    [
        (_encounter("in-progress", "IMP", "2024-02-28T00:00:00Z", None), True),
        # Without a period start an encounter exists at no time (issue 23: an in-progress
        # status alone put its patient into every night).
        (_encounter("in-progress", "ICU", None, None), False),
        (_encounter("in-progress", "ICU", None, "2024-03-02T00:00:00Z"), False),
        (_encounter("finished", "ACUTE", "2024-02-28T00:00:00Z", "2024-03-02T00:00:00Z"), True),
        (_encounter("finished", "IMP", "2024-02-28T00:00:00Z", "2024-02-29T00:00:00Z"), False),
        (_encounter("in-progress", "IMP", "2024-03-05T00:00:00Z", None), False),
        (_encounter("in-progress", "AMB", "2024-02-28T00:00:00Z", None), False),
        (_encounter("cancelled", "IMP", "2024-02-28T00:00:00Z", None), False),
        (_encounter("finished", "IMP", None, None), False),
    ],
)
def test_active_encounter_rule(encounter: dict[str, object], active: bool) -> None:
    assert is_active_encounter(encounter, T0) is active


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from(["year", "month", "day", "utc", "ahead", "behind"]),
)
def test_every_time_fhir_allows_is_placed_from_year_1_to_9999(when: datetime, form: str) -> None:
    text = {
        "year": f"{when.year:04d}",
        "month": f"{when.year:04d}-{when.month:02d}",
        "day": when.date().isoformat(),
        "utc": when.replace(microsecond=0).isoformat() + "Z",
        "ahead": when.replace(microsecond=0).isoformat() + "+14:00",
        "behind": when.replace(microsecond=0).isoformat() + "-12:00",
    }[form]
    try:
        span = time_range(text)
    except OverflowError as error:  # the bug this pins: one record stopped every night
        pytest.fail(f"{text}: {error}")
    if span is None:  # only an offset that moves the instant out of years 1-9999
        assert form in ("ahead", "behind")
        assert when.year in (1, 9999)
        return
    start, end = span
    assert start < end <= OPEN


def test_an_open_end_sentinel_reads_as_ongoing_and_stops_nothing() -> None:
    encounter = {
        "status": "in-progress",
        "class": {"code": "IMP"},
        "period": {"start": "2024-02-28T08:00:00Z", "end": "9999-12-31"},
    }
    assert is_under_way(encounter, T0)
    assert is_active_encounter(encounter, T0)
    assert time_range("9999-12-31") == (datetime(9999, 12, 31, tzinfo=UTC), OPEN)
    assert time_range("9999") == (datetime(9999, 1, 1, tzinfo=UTC), OPEN)
    last = effective_range({"effectiveDateTime": "9999-12-31T23:59:59Z"})
    assert last == (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), OPEN)
    assert not overlaps(last, T0 - timedelta(hours=48), T0)
