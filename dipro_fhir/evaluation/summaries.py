"""EHR summaries of a timeline: the inputs of the logistic-regression baseline.

Per variable over the observation window: the last, mean, lowest and highest value, the
change from the first to the last value, and the share of hours observed; then the 17
demographic columns. Unobserved variables are NaN here; the baseline replaces them by its
training mean (the observed share tells the model they were missing). Pure: a timeline in,
a vector out.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from dipro.vocab import DEMOGRAPHIC_COLUMNS, VARIABLES
from dipro_fhir.core.timeline import PatientTimeline

FloatArray = npt.NDArray[np.float64]

_PER_VARIABLE: Final[tuple[str, ...]] = ("last", "mean", "min", "max", "change", "observed")
#: Feature names, in the order of :func:`summarise`'s vector.
FEATURE_NAMES: Final[tuple[str, ...]] = tuple(
    f"{v}:{s}" for v in VARIABLES for s in _PER_VARIABLE
) + tuple(f"demographic:{c}" for c in DEMOGRAPHIC_COLUMNS)


def summarise(timeline: PatientTimeline) -> FloatArray:
    """The summary vector of one timeline (``len(FEATURE_NAMES)``, NaN where unobserved)."""
    values = np.where(timeline.ehr_mask, timeline.ehr_values, np.nan).astype(np.float64)
    hours = max(values.shape[0], 1)
    out = np.full((len(VARIABLES), len(_PER_VARIABLE)), np.nan)
    for v in range(len(VARIABLES)):
        seen = values[:, v][np.isfinite(values[:, v])]
        out[v, 5] = seen.size / hours
        if seen.size:
            out[v, :5] = (seen[-1], seen.mean(), seen.min(), seen.max(), seen[-1] - seen[0])
    return np.concatenate([out.ravel(), timeline.demographics.astype(np.float64)])
