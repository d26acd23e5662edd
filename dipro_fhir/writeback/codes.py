"""Code systems, identifier systems and deterministic ids of what write-back produces.

The project's own systems live under :data:`PROJECT_BASE`. Logical ids are client-assigned
and deterministic (FHIR R4 ``id`` datatype: ``[A-Za-z0-9\\-\\.]{1,64}``), derived by hashing
what makes a resource unique, so writing the same thing twice lands on the same resource
(R4 3.1.0.4.2 "update as create") and never creates a duplicate.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final

from dipro.vocab import FINDINGS, LOS_BINS

PROJECT_BASE: Final[str] = "https://dipro-fhir.dev/fhir"
MODEL_SYSTEM: Final[str] = f"{PROJECT_BASE}/CodeSystem/model"
TASK_SYSTEM: Final[str] = f"{PROJECT_BASE}/CodeSystem/task"
LOS_SYSTEM: Final[str] = f"{PROJECT_BASE}/CodeSystem/length-of-stay-bin"
PROGRESSION_SYSTEM: Final[str] = f"{PROJECT_BASE}/CodeSystem/progression-outcome"
CHANGE_SYSTEM: Final[str] = f"{PROJECT_BASE}/CodeSystem/progression-change"
FINDING_SYSTEM: Final[str] = f"{PROJECT_BASE}/CodeSystem/cxr-finding"
SCORE_PATH_SYSTEM: Final[str] = f"{PROJECT_BASE}/CodeSystem/score-path"
ASSESSMENT_ID_SYSTEM: Final[str] = f"{PROJECT_BASE}/sid/risk-assessment"
MODEL_ID_SYSTEM: Final[str] = f"{PROJECT_BASE}/sid/model"
FINDING_EXTENSION: Final[str] = f"{PROJECT_BASE}/StructureDefinition/progression-finding"
CHANGE_EXTENSION: Final[str] = f"{PROJECT_BASE}/StructureDefinition/progression-change"

SNOMED: Final[str] = "http://snomed.info/sct"
DEAD: Final[tuple[str, str]] = ("419099009", "Dead")
DEATH_TEXT: Final[str] = "Death in hospital"
AI_LABEL_SYSTEM: Final[str] = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
AI_LABEL_CODE: Final[str] = "AIAST"
AI_LABEL_DISPLAY: Final[str] = "Artificial Intelligence asserted"
PARTICIPANT_SYSTEM: Final[str] = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"

TASK_DISPLAY: Final[dict[str, str]] = {
    "mortality": "In-hospital mortality",
    "los": "Length of stay",
    "progression": "Chest X-ray disease progression",
}
LOS_DISPLAY: Final[dict[str, str]] = {
    LOS_BINS[0]: "Length of stay 2 to under 3 days",
    LOS_BINS[1]: "Length of stay 3 to under 4 days",
    LOS_BINS[2]: "Length of stay 4 to under 6 days",
    LOS_BINS[3]: "Length of stay 6 days or more",
}
CHANGE_CODE: Final[dict[str, tuple[str, str]]] = {
    "worsened": ("worsened", "Worsened"),
    "improved": ("improved", "Improved"),
    "no_change": ("no-change", "No change"),
}
FINDING_DISPLAY: Final[dict[str, str]] = {f: f.replace("_", " ").capitalize() for f in FINDINGS}


def utc_instant(moment: datetime) -> str:
    """Return an R4 ``dateTime``/``instant`` in UTC with seconds: ``2026-11-24T00:00:00Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def assessment_key(model_version: str, task: str, patient_id: str, as_of: datetime) -> str:
    """Return the 64-hex business key of a RiskAssessment (the identifier's value)."""
    return _digest("risk-assessment", model_version, task, patient_id, utc_instant(as_of))


def assessment_id(model_version: str, task: str, patient_id: str, as_of: datetime) -> str:
    """Return the RiskAssessment's logical id: ``ra-`` and 40 hex digits of its key."""
    return f"ra-{assessment_key(model_version, task, patient_id, as_of)[:40]}"


def device_id(model_name: str, model_version: str) -> str:
    """Return the logical id of the ``Device`` that stands for a model version."""
    return f"model-{_digest('device', model_name, model_version)[:40]}"


def provenance_id(run_id: str, targets: list[str]) -> str:
    """Return the logical id of a chunk's ``Provenance``: run id and the sorted targets.

    Derived from the targets rather than a chunk index so that chunks of different callers
    (pipeline chunks, transaction bundles) can never collide within a run.
    """
    return f"prov-{_digest('provenance', run_id, *sorted(targets))[:40]}"
