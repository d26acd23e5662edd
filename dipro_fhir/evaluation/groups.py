"""The subgroups a patient is counted in: sex, age band and race/ethnicity.

Read from the 17 mapped demographic columns (``dipro.vocab.DEMOGRAPHIC_COLUMNS``), so the
evaluation of a checkpoint (:mod:`dipro_fhir.evaluation.evaluate`) and the monitor of its
nights (:mod:`dipro_fhir.monitoring`) group patients by the same rules. Pure.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from dipro.vocab import DEMOGRAPHIC_COLUMNS

#: Upper age (exclusive) and the band's name.
AGE_BANDS: Final[tuple[tuple[float, str], ...]] = (
    (45.0, "18-44"),
    (65.0, "45-64"),
    (80.0, "65-79"),
    (float("inf"), "80+"),
)
UNKNOWN: Final[str] = "unknown"
_COLUMN: Final = {name: i for i, name in enumerate(DEMOGRAPHIC_COLUMNS)}


def age_band(age: float | None) -> str:
    """The band of an age in years (``unknown`` when there is none)."""
    if age is None or not np.isfinite(age):
        return UNKNOWN
    return next(band for top, band in AGE_BANDS if age < top)


def demographic_groups(demographics: npt.NDArray[np.floating]) -> dict[str, str]:
    """``sex``, ``age_band`` and ``race_ethnicity`` of one patient's demographic columns."""
    demo = demographics
    sex = (
        "female"
        if demo[_COLUMN["gender_F"]] > 0
        else "male"
        if demo[_COLUMN["gender_M"]] > 0
        else UNKNOWN
    )
    races = [
        (float(demo[i]), name.removeprefix("race_"))
        for name, i in _COLUMN.items()
        if name.startswith("race_")
    ]
    value, race = max(races)
    return {
        "sex": sex,
        "age_band": age_band(float(demo[_COLUMN["age"]])),
        "race_ethnicity": race.lower() if value > 0 else UNKNOWN,
    }
