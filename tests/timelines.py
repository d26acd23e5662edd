"""Compare timelines extracted by different paths (REST per patient, batched REST, Bulk NDJSON).

Two paths give "the same timeline" when everything the model and the write-back read is
equal: the EHR grid (values with NaN where unobserved, mask, hours), demographics, the CXR
events (study, acquisition time, crops), provenance, data issues and the stay.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from dipro_fhir.core.timeline import PatientTimeline


def fingerprint(timeline: PatientTimeline) -> tuple[Any, ...]:
    """A hashable summary of everything scoring and write-back read from a timeline."""

    def digest(array: Any) -> str:
        data = np.ascontiguousarray(np.nan_to_num(np.asarray(array), nan=-1e30))
        return hashlib.sha256(data.tobytes()).hexdigest()[:16]

    images = tuple(
        (i.study_uid, i.acquired.isoformat(), digest(i.crops), digest(i.region_mask))
        for i in timeline.images
    )
    return (
        timeline.patient_id,
        timeline.encounter_id,
        timeline.as_of.isoformat(),
        timeline.window_start.isoformat(),
        digest(timeline.ehr_values),
        digest(timeline.ehr_mask),
        digest(timeline.ehr_hours),
        digest(timeline.demographics),
        int(np.asarray(timeline.ehr_mask).sum()),
        images,
        tuple(timeline.provenance),
        tuple(sorted((i.code, i.resource or "") for i in timeline.issues)),  # order: search order
        None if timeline.stay_start is None else timeline.stay_start.isoformat(),
    )
