"""Hourly binning of observation events into DiPro's ``[T, V]`` grid (reference §1.4 step 2).

Hour ``h`` is the bin ``[window_start + h, window_start + h + 1)``; within each bin the last
observation wins, except for volumes per hour (urine output: a variable whose ``hourly`` is
``sum``), where the hour's value is the sum of its records, each resource counted once. "Last"
is a total order, so the result does not depend on the order of the input: effective time,
then resource id, then resource version, then value. Events outside
``[window_start, window_start + window_hours)`` are left out. No imputation here: the model's
"normal value then forward fill" (§1.4 step 5) belongs to scoring, which sees the mask.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import numpy as np

from dipro.vocab import VARIABLES
from dipro_fhir.core.timeline import BoolArray, FloatArray, ObservationEvent
from dipro_fhir.mapping.times import require_aware
from dipro_fhir.mapping.variables import SPECS_BY_NAME

_HOUR = timedelta(hours=1)
_COLUMN = {name: i for i, name in enumerate(VARIABLES)}
_SUMMED = frozenset(_COLUMN[name] for name, spec in SPECS_BY_NAME.items() if spec.hourly == "sum")


def _order_key(event: ObservationEvent) -> tuple[datetime, str, str, float]:
    return (event.effective, event.source.id, event.source.version or "", event.value)


def bin_hourly(
    events: Iterable[ObservationEvent], window_start: datetime, window_hours: int = 48
) -> tuple[FloatArray, BoolArray, FloatArray]:
    """Bin events into hourly rows: the last value per (hour, variable), or the sum of the
    hour's records for a volume per hour.

    Args:
        events: Observation events in canonical units (any order; duplicates allowed).
        window_start: Start of hour 0 (timezone-aware).
        window_hours: Number of hourly rows ``T``.

    Returns:
        ``values`` float32 ``[T, V]`` (NaN where none), ``mask`` bool ``[T, V]`` and
        ``hours`` float32 ``[T]`` (hours since ``window_start`` of each row's start).

    Raises:
        ValueError: ``window_start`` is naive or ``window_hours`` is not positive.
    """
    require_aware(window_start, "window_start")
    if window_hours <= 0:
        raise ValueError("window_hours must be positive")
    values = np.full((window_hours, len(VARIABLES)), np.nan, dtype=np.float32)
    mask = np.zeros((window_hours, len(VARIABLES)), dtype=np.bool_)
    end = window_start + window_hours * _HOUR
    summed: set[tuple[int, str, str]] = set()  # (column, resource id, version) added once
    for event in sorted(events, key=_order_key):
        column = _COLUMN.get(event.variable)
        if column is None or not window_start <= event.effective < end:
            continue
        row = (event.effective - window_start) // _HOUR
        if column in _SUMMED:
            record = (column, event.source.id, event.source.version or "")
            if record in summed:
                continue
            summed.add(record)
            previous = values[row, column] if mask[row, column] else 0.0
            values[row, column] = previous + event.value
        else:
            values[row, column] = event.value
        mask[row, column] = True
    hours = np.arange(window_hours, dtype=np.float32)
    return values, mask, hours
