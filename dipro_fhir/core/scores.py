"""The scoring contract: what scoring hands to write-back and the results store.

A :class:`Score` is one predicted outcome for one patient, task and as-of time, with the
model that produced it and the resources it was based on (DESIGN.md "Data contracts").
A :class:`PatientFailure` is a patient the run could not finish, with the stage and a
stable reason code, so nothing is silently dropped. Both are plain frozen dataclasses that
cross module boundaries (STYLE.md "Data and types").

Outcome codes per task (``dipro.vocab.TASKS``):

* ``mortality``: ``"death"`` (probability of in-hospital death);
* ``los``: one of ``dipro.vocab.LOS_BINS`` (probability of that length-of-stay bin);
* ``progression``: ``"<finding>:<worsened|improved|no_change>"`` with ``finding`` from
  ``dipro.vocab.FINDINGS`` and the class from ``dipro.vocab.PROGRESSION_CLASSES``.

Probabilities are fractions in ``[0, 1]`` inside the program; the FHIR write-back chooses
the wire scale (percent or fraction) from its settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from dipro.vocab import FINDINGS, LOS_BINS, PROGRESSION_CLASSES, TASKS
from dipro_fhir.core.timeline import EncounterId, PatientId, ResourceRef, RunId

#: Whether consecutive CXR pairs were used, or the EHR-only variant (all pairs masked).
ScorePath = Literal["pairs", "ehr_only"]
SCORE_PATHS: Final[tuple[str, ...]] = ("pairs", "ehr_only")

#: Where in the run a patient failed.
FailureStage = Literal["plan", "extract", "map", "score", "writeback"]
FAILURE_STAGES: Final[tuple[str, ...]] = ("plan", "extract", "map", "score", "writeback")

MORTALITY_OUTCOME: Final[str] = "death"


def outcomes_for(task: str) -> tuple[str, ...]:
    """Return every valid outcome code of ``task``, in a stable order.

    Raises:
        ValueError: ``task`` is not one of ``dipro.vocab.TASKS``.
    """
    if task == "mortality":
        return (MORTALITY_OUTCOME,)
    if task == "los":
        return LOS_BINS
    if task == "progression":
        return tuple(f"{f}:{c}" for f in FINDINGS for c in PROGRESSION_CLASSES)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """The model that produced scores: name, version, the weights' SHA-256 and its card.

    ``card_hash`` is the SHA-256 of the weights file (the card's ``weights_sha256``);
    ``card_json`` is the checkpoint's ``model_card.json`` (``""`` when not at hand), written
    to FHIR as the model card DocumentReference.
    """

    name: str
    version: str
    card_hash: str
    card_json: str = ""


@dataclass(frozen=True, slots=True)
class Score:
    """One predicted outcome for one patient, task and as-of time.

    Attributes:
        patient_id: The FHIR ``Patient`` logical id.
        encounter_id: The FHIR ``Encounter`` logical id, when the patient has one in scope.
        task: One of ``dipro.vocab.TASKS``.
        outcome: The outcome code (see the module docstring); checked against the task.
        probability: A fraction in ``[0, 1]``.
        model_name: The model's name (``Device.deviceName``).
        model_version: The model's version; part of every natural key and identifier.
        as_of: The as-of time of the run, timezone-aware (UTC).
        run_id: The run that produced the score.
        basis: The resources the score was based on (Observations, ImagingStudies).
        path: ``"pairs"`` when CXR pairs were used, ``"ehr_only"`` with fewer than two CXRs.
        missing_regions: Regions (``dipro.vocab.REGIONS`` names) missing on at least one of
            the radiographs used (not placed, or failed quality control): the model saw
            its learnable padding there.
        images_not_used: Radiographs of the window left out because their region placement
            failed quality control as a whole.
        films_left_out: Every film or study of the window that was not used, as
            ``<resource> (<reason code>)``: ``instance/<SOP UID>`` or ``study/<UID>`` or
            ``ImagingStudy/<id>`` with e.g. ``regions-qc-film``, ``corrupt-dicom``,
            ``patient-mismatch`` (the RiskAssessment's note names them).
        films_from_thorax: Films used whose regions were placed from the thorax outline
            (white lungs, ``regions-from-thorax``: less sure than measured lung fields), as
            ``<resource>`` (the RiskAssessment's note names them).
    """

    patient_id: PatientId
    encounter_id: EncounterId | None
    task: str
    outcome: str
    probability: float
    model_name: str
    model_version: str
    as_of: datetime
    run_id: RunId
    basis: tuple[ResourceRef, ...] = ()
    path: str = "pairs"
    missing_regions: tuple[str, ...] = ()
    images_not_used: int = 0
    films_left_out: tuple[str, ...] = ()
    films_from_thorax: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.outcome not in outcomes_for(self.task):
            raise ValueError(f"outcome {self.outcome!r} is not valid for task {self.task!r}")
        if not (math.isfinite(self.probability) and 0.0 <= self.probability <= 1.0):
            raise ValueError(f"probability {self.probability!r} is not a fraction in [0, 1]")
        if self.as_of.tzinfo is None or self.as_of.utcoffset() is None:
            raise ValueError("as_of must be timezone-aware")
        if self.path not in SCORE_PATHS:
            raise ValueError(f"path {self.path!r} is not one of {SCORE_PATHS}")
        if not self.model_version:
            raise ValueError("model_version must not be empty")


@dataclass(frozen=True, slots=True)
class PatientFailure:
    """A patient the run could not finish, recorded and counted, never dropped.

    Attributes:
        patient_id: The FHIR ``Patient`` logical id (stored; never logged).
        stage: One of ``plan``, ``extract``, ``map``, ``score``, ``writeback``.
        reason: A stable machine-readable code (``source-unavailable``, ``rejected`` ...).
        detail: A short explanation without patient data.
        retriable: Whether a later run may succeed without a data fix.
    """

    patient_id: PatientId
    stage: str
    reason: str
    detail: str = ""
    retriable: bool = False

    def __post_init__(self) -> None:
        if self.stage not in FAILURE_STAGES:
            raise ValueError(f"stage {self.stage!r} is not one of {FAILURE_STAGES}")
        if not self.reason:
            raise ValueError("reason must not be empty")

    @property
    def reason_class(self) -> str:
        """``retriable`` (a later run may succeed), ``internal`` (a defect of ours, caught
        at the patient boundary) or ``data`` (the patient's data must be fixed)."""
        return failure_class(self.reason, self.retriable)


#: Reasons that name a defect of dipro-fhir rather than of the data or a server.
INTERNAL_REASONS = frozenset({"internal-error"})
FAILURE_CLASSES = ("retriable", "data", "internal")


def failure_class(reason: str, retriable: bool) -> str:
    """The class of a failure reason (:attr:`PatientFailure.reason_class`)."""
    if retriable:
        return "retriable"
    return "internal" if reason in INTERNAL_REASONS else "data"
