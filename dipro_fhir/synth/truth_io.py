"""Ground truth as JSON lines (``truth.jsonl``): one :class:`GroundTruth` per line.

The synthetic world writes it next to the FHIR NDJSON and DICOM files so a test, or a person,
can compare what the pipeline mapped with what was generated without regenerating the
cohort. Times are ISO 8601 UTC strings; arrays are lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from dipro_fhir.synth.records import GroundTruth, PairLabel, TruthImage, TruthValue


def truth_to_json(truth: GroundTruth) -> str:
    """One line of JSON (no newline)."""
    return json.dumps(asdict(truth), default=_encode, separators=(",", ":"))


def truth_from_json(line: str) -> GroundTruth:
    """Parse a line written by :func:`truth_to_json`."""
    raw: dict[str, Any] = json.loads(line)
    return GroundTruth(
        patient_id=raw["patient_id"],
        encounter_id=raw["encounter_id"],
        admitted=datetime.fromisoformat(raw["admitted"]),
        discharged=datetime.fromisoformat(raw["discharged"]),
        outcome_known=raw["outcome_known"],
        mortality=raw["mortality"],
        los_days=raw["los_days"],
        los_bin=raw["los_bin"],
        values=tuple(
            TruthValue(
                v["variable"],
                datetime.fromisoformat(v["effective"]),
                v["value"],
                datetime.fromisoformat(v["available"]),
                v["observation_id"],
            )
            for v in raw["values"]
        ),
        images=tuple(
            TruthImage(
                i["study_uid"],
                i["series_uid"],
                i["instance_uid"],
                datetime.fromisoformat(i["acquired"]),
                i["view_position"],
            )
            for i in raw["images"]
        ),
        pairs=tuple(
            PairLabel(
                p["earlier_study_uid"],
                p["later_study_uid"],
                tuple(p["labels"]),
                tuple(tuple(r) for r in p["region_labels"]),
            )
            for p in raw["pairs"]
        ),
    )


def read_truth(path: str | Path) -> Iterator[GroundTruth]:
    """Stream the ground truth records of a ``truth.jsonl`` file."""
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield truth_from_json(line)


def _encode(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__}")
